"""Layer normalisation over the last (channel) axis."""
from ..backend import get_xp
from .softmax import row_sum


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Normalise each C-vector, then scale and shift.

    x: (..., C), gamma: (C,), beta: (C,)  ->  out: (..., C)
        mu   = mean_C(x)            rstd = 1 / sqrt(mean_C((x - mu)^2) + eps)
        xhat = (x - mu) * rstd      out  = gamma * xhat + beta

    Half precision (float16) x is normalised in float32 and the output cast back, as
    PyTorch's autocast does: in float16, (x - mu)^2 overflows to inf once |x - mu| > 256
    and the statistics lose most of their digits.
    """
    if x.dtype.kind != "f":
        raise TypeError(f"layernorm_forward needs a floating-point x, got dtype {x.dtype}")
    if x.dtype.itemsize < 4:                              # float16: statistics in float32
        out, cache = layernorm_forward(x.astype("float32"), gamma, beta, eps)
        return out.astype(x.dtype), cache
    xp = get_xp(x)
    C = x.shape[-1]
    mu = row_sum(x) * (1.0 / C)                           # (..., 1) mean_C(x)
    xhat = x - mu                                         # (..., C) centred; scaled below
    out = xhat * xhat                                     # (..., C) scratch, reused for the output
    var = row_sum(out) * (1.0 / C)                        # (..., 1) biased variance, as PyTorch
    rstd = 1.0 / xp.sqrt(var + eps)                       # (..., 1)
    xhat *= rstd                                          # (..., C)
    xp.multiply(xhat, gamma, out=out)
    out += beta
    return out, (xhat, rstd, gamma)


def layernorm_backward(dout, cache):
    """Returns (dx, dgamma, dbeta).

        dbeta = sum_rows dout           dgamma = sum_rows dout * xhat
        g  = dout * gamma               (the gradient w.r.t. xhat)
        dx = rstd * (g - mean_C(g) - xhat * mean_C(g * xhat))
    The two mean_C terms are the paths through mu and rstd, which depend on the whole row.
    The two means are matrix-vector products, mean_C(g) = (dout @ gamma) / C and
    mean_C(g * xhat) = ((dout * xhat) @ gamma) / C, so g * xhat is never formed.
    """
    if dout.dtype.itemsize < 4:                           # float16, as in the forward
        dx, dgamma, dbeta = layernorm_backward(dout.astype("float32"), cache)
        return dx.astype(dout.dtype), dgamma, dbeta
    xhat, rstd, gamma = cache
    xp = get_xp(dout)
    C = xhat.shape[-1]
    d2 = dout.reshape(-1, C)                              # (N, C)
    x2 = xhat.reshape(-1, C)                              # (N, C)
    dout_xhat = d2 * x2                                   # (N, C); scratch space below
    dgamma = dout_xhat.sum(axis=0)                        # (C,)
    dbeta = d2.sum(axis=0)                                # (C,)
    mean_g = (d2 @ gamma)[:, None] / C                    # (N, 1) mean_C(g)
    mean_gx = (dout_xhat @ gamma)[:, None] / C            # (N, 1) mean_C(g * xhat)
    dx = d2 * gamma                                       # (N, C) g
    dx -= mean_g
    dx -= xp.multiply(x2, mean_gx, out=dout_xhat)         # xhat * mean_C(g * xhat)
    dx *= rstd.reshape(-1, 1)
    return dx.reshape(dout.shape), dgamma, dbeta


def layernorm_per_example_grads(dout, cache):
    """Each example's own (dgamma, dbeta), for DP-SGD: dout (B, ..., C) -> (B, C), (B, C).

        dgamma_b = sum over example b's rows of dout * xhat     dbeta_b = sum over b's rows of dout
    Summed over b they are layernorm_backward's dgamma and dbeta.
    """
    xhat = cache[0]
    B, C = dout.shape[0], dout.shape[-1]
    dgamma = (dout * xhat).reshape(B, -1, C).sum(axis=1)          # (B, C)
    dbeta = dout.reshape(B, -1, C).sum(axis=1)                    # (B, C)
    return dgamma, dbeta



# -- The textbook form ------------------------------------------------------------------------
# What chapter 3 derives, line for line. The functions above compute the same numbers with
# fewer passes over memory (row sums as matrix-vector products, scratch arrays reused); a
# test (tests/test_textbook_forms.py) keeps the two in agreement. Models use the fast ones.

def layernorm_forward_textbook(x, gamma, beta, eps=1e-5):
    """The forward of `layernorm_forward`, written as its formulas."""
    xp = get_xp(x)
    mu = x.mean(axis=-1, keepdims=True)                   # (..., 1)
    rstd = 1.0 / xp.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)   # (..., 1)
    xhat = (x - mu) * rstd                                # (..., C)
    return gamma * xhat + beta, (xhat, rstd, gamma)


def layernorm_backward_textbook(dout, cache):
    """dx = rstd * (g - mean_C(g) - xhat * mean_C(g * xhat)),  g = dout * gamma."""
    xhat, rstd, gamma = cache
    rows = tuple(range(dout.ndim - 1))                    # every axis but C
    g = dout * gamma                                      # (..., C)
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return dx, (dout * xhat).sum(axis=rows), dout.sum(axis=rows)