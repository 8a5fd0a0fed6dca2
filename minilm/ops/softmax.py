"""Softmax along the last axis, optionally masked, stable through max-subtraction."""
from ..backend import get_xp


def softmax_forward(x, mask=None):
    """x: (..., K), mask: bool broadcastable to x (True = keep) or None  ->  P: (..., K)

        P_k = exp(x_k - m) / sum_j exp(x_j - m),   m = max_j x_j   (masked x_j count as -inf)
    A row whose every entry is masked gives all zeros, never NaN.
    """
    xp = get_xp(x)
    if mask is not None:
        x = xp.where(mask, x, -xp.inf)                    # (..., K) fresh array
        m = x.max(axis=-1, keepdims=True)                 # (..., 1)
        m[m == -xp.inf] = 0.0                             # fully masked row: exp(-inf - 0) = 0
        e = x
        e -= m
    else:
        e = x - x.max(axis=-1, keepdims=True)             # (..., K)
    xp.exp(e, out=e)
    s = e.sum(axis=-1, keepdims=True)                     # (..., 1)
    if mask is not None:
        s[s == 0] = 1.0                                   # 0 / 1 = 0 for fully masked rows
    e /= s
    return e, e


def softmax_backward(dout, cache):
    """dx_k = P_k (dout_k - sum_j dout_j P_j)   (the Jacobian diag(P) - P P^T applied to dout).
    Masked entries have P = 0 and so get zero gradient."""
    P = cache
    dx = dout * P
    dx -= P * dx.sum(axis=-1, keepdims=True)
    return dx


def log_softmax(x):
    """log P = x - logsumexp(x) along the last axis (no backward; used by generation and metrics)."""
    xp = get_xp(x)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + xp.log(xp.exp(x - m).sum(axis=-1, keepdims=True)))
