"""Embedding lookup: rows of a table picked by integer ids."""
from ..backend import get_xp


def embedding_forward(ids, W):
    """ids: (...) integers in [0, V), W: (V, C)  ->  out: (..., C),  out[i] = W[ids[i]]

    ids given as a NumPy array (or list) are moved to W's backend first: a GPU would take
    them as an index, but the backward's scatter-add needs them beside dW."""
    ids = get_xp(W).asarray(ids)
    return W[ids], (ids, W.shape)


def embedding_backward(dout, cache):
    """dW[v] = sum of dout[i] over every position i with ids[i] == v.

    A repeated id must collect every contribution, so this is a scatter-add (`add.at`),
    never `dW[ids] = dout` (which would keep only the last one). It runs on the flattened
    table, where entry (v, c) is number v * C + c: NumPy's add.at is several times faster
    with one index per number than with one index per row.
    """
    if dout.dtype.itemsize < 4:                           # float16: add up in float32, round once
        return embedding_backward(dout.astype("float32"), cache).astype(dout.dtype)
    ids, (V, C) = cache
    xp = get_xp(dout)
    if ids.shape != dout.shape[:-1]:
        # ids broadcast against dout (positions (1, T) shared by a batch (B, T, C)): every row
        # that read the same id adds into it, so sum those rows first
        shared = tuple(a for a, (n, m) in enumerate(zip(ids.shape, dout.shape[:-1])) if n != m)
        dout = dout.sum(axis=shared, keepdims=True)
    dW = xp.zeros((V, C), dtype=dout.dtype)
    flat = (ids.reshape(-1, 1) * C + xp.arange(C)).reshape(-1)    # (N * C,) positions in dW
    xp.add.at(dW.reshape(-1), flat, dout.reshape(-1))
    return dW


def embedding_per_example_grads(dout, cache):
    """Each example's own dW, for DP-SGD: dout (B, ..., C) -> (B, V, C).

        dW_b[v] = sum of dout[b, i] over example b's positions i with ids[b, i] == v
    ids of shape (1, T) (one row shared by the batch) are broadcast to dout's rows. Summed
    over b it is embedding_backward's dW; each example gets a whole (V, C) table, so this
    costs B times the memory of the table.
    """
    ids, (V, C) = cache
    xp = get_xp(dout)
    B = dout.shape[0]
    ids2 = xp.broadcast_to(ids, dout.shape[:-1]).reshape(B, -1)      # (B, rows)
    rows = xp.broadcast_to(xp.arange(B)[:, None], ids2.shape)       # (B, rows): the example
    dW = xp.zeros((B, V, C), dtype=dout.dtype)                      # (B, V, C)
    xp.add.at(dW, (rows.reshape(-1), ids2.reshape(-1)), dout.reshape(-1, C))
    return dW
