"""Losses: each a forward/backward pair returning a scalar mean.

Masked-LM is cross-entropy with `ignore_index` on unmasked positions; next-sentence
prediction is cross-entropy over 2 classes. One op serves them all.
"""
from ..backend import get_xp, to_numpy
from .softmax import row_max, row_sum

IGNORE_INDEX = -100


def cross_entropy_forward(logits, targets, ignore_index=IGNORE_INDEX, label_smoothing=0.0):
    """logits: (N, V), targets: (N,) ints in [0, V) or ignore_index  ->  loss: float

        log p_v = z_v - logsumexp(z)           (never log(softmax(z)): exp can underflow to 0)
        loss    = -1/M sum_{i valid} [(1 - eps) log p_{i, t_i} + eps/V sum_v log p_{i, v}]
    M = number of targets != ignore_index. With no valid target the loss is 0 (not NaN).
    float16 logits are taken to float32 first (the softmax and the mean in float32; the
    cache, and so the gradient, is float32 too).
    """
    if logits.dtype.itemsize < 4:                         # float16: the loss in float32
        return cross_entropy_forward(logits.astype("float32"), targets, ignore_index, label_smoothing)
    xp = get_xp(logits)
    N, V = logits.shape
    valid = targets != ignore_index                       # (N,)
    bad = valid & ((targets < 0) | (targets >= V))        # (N,) out-of-range targets
    safe_t = xp.where(valid & ~bad, targets, 0)           # (N,) any index for ignored rows
    z = logits - row_max(logits)                          # (N, V)
    lse = xp.log(row_sum(xp.exp(z)))                      # (N, 1)
    logp = z
    logp -= lse                                           # (N, V) log-probabilities
    nll = -logp[xp.arange(N), safe_t]                     # (N,)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * logp.mean(axis=-1)
    # one read on the host for the step's three numbers (a GPU waits for each read)
    total, M, n_bad = to_numpy(xp.stack([(nll * valid).sum().astype("float64"),
                                         valid.sum().astype("float64"), bad.sum().astype("float64")]))
    if n_bad:
        t = to_numpy(targets[valid])
        raise ValueError(f"targets must be in [0, {V}) or {ignore_index}; got values in "
                         f"[{int(t.min())}, {int(t.max())}]")
    M = int(M)
    loss = float(total) / max(M, 1)
    return loss, (logp, safe_t, valid, M, label_smoothing)


def cross_entropy_backward(dloss, cache):
    """dlogits_i = dloss / M * (p_i - (1 - eps) onehot(t_i) - eps / V),   0 for ignored rows.

    Derivation: d/dz_v [-log p_t] = p_v - [v = t] because d logsumexp(z)/dz_v = p_v;
    the smoothing term -eps/V sum_u log p_u contributes eps (p_v - 1/V).
    """
    logp, safe_t, valid, M, eps = cache
    xp = get_xp(logp)
    N, V = logp.shape
    dz = xp.exp(logp)                                     # (N, V) probabilities
    dz[xp.arange(N), safe_t] -= 1.0 - eps
    if eps:
        dz -= eps / V
    dz *= (valid * (dloss / max(M, 1)))[:, None].astype(dz.dtype)
    return dz
