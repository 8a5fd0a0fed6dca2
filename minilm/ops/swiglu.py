"""SiLU and the SwiGLU feed-forward of Llama and Qwen3: down(silu(gate(x)) * up(x))."""
from ..backend import get_xp
from .linear import linear_backward, linear_forward


def silu_forward(x):
    """out = x * sigmoid(x)  (also called swish).

    float16 x (mixed precision): computed in float32 and rounded once, as a GPU kernel does;
    the cache keeps only x, and the backward recomputes the sigmoid in float32 (a float16
    sigmoid near 1 would make its 1 - s a cancellation)."""
    xp = get_xp(x)
    if x.dtype.itemsize < 4:
        x32 = x.astype("float32")
        return (x32 / (1.0 + xp.exp(-x32))).astype(x.dtype), (x, None)
    s = 1.0 / (1.0 + xp.exp(-x))                          # (...,) sigmoid(x)
    return x * s, (x, s)


def silu_backward(dout, cache):
    """d silu/dx = s + x s (1 - s) = s (1 + x (1 - s)),  s = sigmoid(x)."""
    x, s = cache
    if s is None:                                         # float16: in float32, rounded once
        x32 = x.astype("float32")
        s = 1.0 / (1.0 + get_xp(x).exp(-x32))
        return (dout.astype("float32") * s * (1.0 + x32 * (1.0 - s))).astype(dout.dtype)
    return dout * s * (1.0 + x * (1.0 - s))


def swiglu_forward(x, W_gate, W_up, W_down):
    """Gated feed-forward without biases.

    x: (..., C), W_gate, W_up: (C, F), W_down: (F, C)  ->  out: (..., C)
        g = x @ W_gate      u = x @ W_up      a = silu(g)      h = a * u      out = h @ W_down
    """
    g, gate_cache = linear_forward(x, W_gate)             # (..., F)
    u, up_cache = linear_forward(x, W_up)                 # (..., F)
    a, silu_cache = silu_forward(g)                       # (..., F)
    h = a * u                                             # (..., F)
    out, down_cache = linear_forward(h, W_down)           # (..., C)
    return out, (gate_cache, up_cache, silu_cache, a, u, down_cache)


def swiglu_backward(dout, cache):
    """Returns (dx, dW_gate, dW_up, dW_down): the forward read from the bottom up.

        dh = dout @ W_down^T     da = dh * u     du = dh * a     dg = silu'(g) da
        dx = dg @ W_gate^T + du @ W_up^T    (x feeds both branches, so the two add)
    """
    gate_cache, up_cache, silu_cache, a, u, down_cache = cache
    dh, dW_down, _ = linear_backward(dout, down_cache)    # undo: out = h @ W_down
    da, du = dh * u, dh * a                               # undo: h = a * u       (..., F)
    dg = silu_backward(da, silu_cache)                    # undo: a = silu(g)     (..., F)
    dx_up, dW_up, _ = linear_backward(du, up_cache)       # undo: u = x @ W_up
    dx_gate, dW_gate, _ = linear_backward(dg, gate_cache) # undo: g = x @ W_gate
    return dx_gate + dx_up, dW_gate, dW_up, dW_down
