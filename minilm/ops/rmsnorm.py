"""Root-mean-square normalisation over the last (channel) axis (Llama, Qwen3)."""
from ..backend import get_xp


def rmsnorm_forward(x, w, eps=1e-6):
    """Scale each C-vector to unit root-mean-square, then by a learned gain. No centring, no bias.

    x: (..., C), w: (C,)  ->  out: (..., C)
        rstd = 1 / sqrt(mean_C(x^2) + eps)      xhat = x * rstd      out = w * xhat
    Qwen3's per-head norm on queries and keys is this op on (..., H, D) with w: (D,).

    Half precision (float16) x is normalised in float32 and cast back before the gain, as
    transformers' LlamaRMSNorm does: in float16, x^2 overflows once |x| > 256.
    """
    if x.dtype.kind != "f":
        raise TypeError(f"rmsnorm_forward needs a floating-point x, got dtype {x.dtype}")
    if x.dtype.itemsize < 4:                              # float16: statistics in float32
        out, cache = rmsnorm_forward(x.astype("float32"), w.astype("float32"), eps)
        return out.astype(x.dtype), cache
    xp = get_xp(x)
    rstd = 1.0 / xp.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)   # (..., 1)
    xhat = x * rstd                                       # (..., C)
    return xhat * w, (xhat, rstd, w)                      # (..., C)


def rmsnorm_backward(dout, cache):
    """Returns (dx, dw).

        dw = sum_rows dout * xhat       g = dout * w      (the gradient w.r.t. xhat)
        dx = rstd * (g - xhat * mean_C(g * xhat))
    LayerNorm's derivative without the mean_C(g) term: there is no mean to subtract, so the
    only path through the whole row is rstd, d rstd / dx_j = -rstd^3 x_j / C.
    """
    if dout.dtype.itemsize < 4:                           # float16, as in the forward
        dx, dw = rmsnorm_backward(dout.astype("float32"), cache)
        return dx.astype(dout.dtype), dw
    xhat, rstd, w = cache
    rows = tuple(range(dout.ndim - 1))                    # every axis but C
    g = dout * w                                          # (..., C)
    dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))   # (..., C)
    return dx, (dout * xhat).sum(axis=rows)
