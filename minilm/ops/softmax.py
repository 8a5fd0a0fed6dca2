"""Softmax along the last axis, optionally masked, stable through max-subtraction."""
from ..backend import get_xp


def row_max(x):
    """max over the last axis, kept as a length-1 axis: (..., K) -> (..., 1).

    The same value as `x.max(axis=-1, keepdims=True)` (NaN included: argmax points at a
    NaN), spelled through argmax because NumPy 2's `max` along a short last axis is up to
    ten times slower than its `argmax` (measured on rows of 64 to 256 floats; see
    BENCHMARKS.md).
    """
    xp = get_xp(x)
    return xp.take_along_axis(x, x.argmax(axis=-1)[..., None], axis=-1)


def row_sum(x):
    """sum over the last axis, kept as a length-1 axis: (..., K) -> (..., 1).

    The same sum as `x.sum(axis=-1, keepdims=True)`, spelled as a matrix-vector product
    with a vector of ones: BLAS's gemv is 3 to 8 times faster than NumPy 2's (pairwise)
    reduction along the last axis for rows of 32 to 1024 floats (measured; BENCHMARKS.md).
    Only the order of the additions differs.
    """
    xp = get_xp(x)
    K = x.shape[-1]
    return (x.reshape(-1, K) @ xp.ones(K, dtype=x.dtype)).reshape(x.shape[:-1] + (1,))


def softmax_inplace(x, mask=None):
    """Overwrite x with softmax(x) along the last axis and return it.

    For callers that own x as scratch space (attention's scores), which saves allocating
    and filling a second array of the same size. Same math as `softmax_forward`.
    """
    xp = get_xp(x)
    if mask is not None:
        xp.copyto(x, -xp.inf, where=~mask)               # masked scores count as -inf
    m = row_max(x)                                       # (..., 1)
    if mask is not None:
        m[m == -xp.inf] = 0.0                            # fully masked row: exp(-inf - 0) = 0
    x -= m
    xp.exp(x, out=x)
    s = row_sum(x)                                       # (..., 1)
    if mask is not None:
        s[s == 0] = 1.0                                  # 0 / 1 = 0 for fully masked rows
    x /= s
    return x


def softmax_forward(x, mask=None):
    """x: (..., K), mask: bool broadcastable to x (True = keep) or None  ->  P: (..., K)

        P_k = exp(x_k - m) / sum_j exp(x_j - m),   m = max_j x_j   (masked x_j count as -inf)
    A row whose every entry is masked gives all zeros, never NaN.
    """
    P = softmax_inplace(x.copy(), mask)                  # (..., K)
    return P, P


def softmax_backward(dout, cache):
    """dx_k = P_k (dout_k - sum_j dout_j P_j)   (the Jacobian diag(P) - P P^T applied to dout).
    Masked entries have P = 0 and so get zero gradient."""
    P = cache
    dx = dout * P
    dx -= P * row_sum(dx)
    return dx


# -- The textbook form ------------------------------------------------------------------------
# What chapter 3 writes; `softmax_forward` / `softmax_backward` above compute the same in
# place and with row sums through BLAS. tests/test_textbook_forms.py keeps them in agreement.

def softmax_forward_textbook(x, mask=None):
    """P = exp(x - max x) / sum exp(x - max x) along the last axis; masked entries -> 0."""
    xp = get_xp(x)
    if mask is not None:
        x = xp.where(mask, x, -xp.inf)                    # masked scores count as -inf
    m = x.max(axis=-1, keepdims=True)                     # (..., 1)
    m = xp.where(m == -xp.inf, 0.0, m)                    # a fully masked row: all zeros below
    e = xp.exp(x - m)                                     # (..., K)
    s = e.sum(axis=-1, keepdims=True)                     # (..., 1)
    P = e / xp.where(s == 0, 1.0, s)
    return P, P


def softmax_backward_textbook(dout, cache):
    """dx = P * (dout - sum_j dout_j P_j)."""
    P = cache
    return P * (dout - (dout * P).sum(axis=-1, keepdims=True))


def log_softmax(x):
    """log P = x - logsumexp(x) along the last axis (no backward; used by generation and metrics)."""
    xp = get_xp(x)
    m = row_max(x)
    return x - (m + xp.log(row_sum(xp.exp(x - m))))
