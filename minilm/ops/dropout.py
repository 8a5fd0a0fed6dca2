"""Inverted dropout: zero each entry with probability p, scale survivors by 1/(1-p)."""


def dropout_forward(x, p, rng=None):
    """x: any shape  ->  out: same shape.

        mask ~ Bernoulli(1 - p),   out = x * mask / (1 - p)
    `rng` is a `Generator` of x's array module (numpy or cupy `random.default_rng`).
    With rng=None or p=0 this is the identity: that *is* eval mode.
    """
    if rng is None or p == 0.0:
        return x, None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    draw = x.dtype if x.dtype.itemsize >= 4 else "float32"   # Generators draw no float16
    keep = rng.random(x.shape, dtype=draw) >= p           # same shape as x
    scale = keep.astype(x.dtype)
    scale *= 1.0 / (1.0 - p)
    return x * scale, scale


def dropout_backward(dout, cache):
    """dx = dout * mask / (1 - p): the same scaled mask the forward used."""
    scale = cache
    return dout if scale is None else dout * scale
