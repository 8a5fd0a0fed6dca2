"""Layer normalisation over the last (channel) axis."""
from ..backend import get_xp


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Normalise each C-vector, then scale and shift.

    x: (..., C), gamma: (C,), beta: (C,)  ->  out: (..., C)
        mu   = mean_C(x)            rstd = 1 / sqrt(mean_C((x - mu)^2) + eps)
        xhat = (x - mu) * rstd      out  = gamma * xhat + beta
    """
    xp = get_xp(x)
    mu = x.mean(axis=-1, keepdims=True)                   # (..., 1)
    xc = x - mu                                           # (..., C)
    var = (xc * xc).mean(axis=-1, keepdims=True)          # (..., 1) biased variance, as PyTorch
    rstd = 1.0 / xp.sqrt(var + eps)                       # (..., 1)
    xhat = xc
    xhat *= rstd                                          # (..., C)
    out = xhat * gamma
    out += beta
    return out, (xhat, rstd, gamma)


def layernorm_backward(dout, cache):
    """Returns (dx, dgamma, dbeta).

        dbeta = sum_rows dout           dgamma = sum_rows dout * xhat
        g  = dout * gamma               (the gradient w.r.t. xhat)
        dx = rstd * (g - mean_C(g) - xhat * mean_C(g * xhat))
    The two mean_C terms are the paths through mu and rstd, which depend on the whole row.
    """
    xhat, rstd, gamma = cache
    C = xhat.shape[-1]
    d2 = dout.reshape(-1, C)                              # (N, C)
    dgamma = (d2 * xhat.reshape(-1, C)).sum(axis=0)       # (C,)
    dbeta = d2.sum(axis=0)                                # (C,)
    g = dout * gamma                                      # (..., C)
    dx = g - g.mean(axis=-1, keepdims=True)
    dx -= xhat * (g * xhat).mean(axis=-1, keepdims=True)
    dx *= rstd
    return dx, dgamma, dbeta
