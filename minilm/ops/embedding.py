"""Embedding lookup: rows of a table picked by integer ids."""
from ..backend import get_xp


def embedding_forward(ids, W):
    """ids: (...) integers in [0, V), W: (V, C)  ->  out: (..., C),  out[i] = W[ids[i]]"""
    return W[ids], (ids, W.shape)


def embedding_backward(dout, cache):
    """dW[v] = sum of dout[i] over every position i with ids[i] == v.

    A repeated id must collect every contribution, so this is a scatter-add (`add.at`),
    never `dW[ids] = dout` (which would keep only the last one). It runs on the flattened
    table, where entry (v, c) is number v * C + c: NumPy's add.at is several times faster
    with one index per number than with one index per row.
    """
    ids, (V, C) = cache
    xp = get_xp(dout)
    dW = xp.zeros((V, C), dtype=dout.dtype)
    flat = (ids.reshape(-1, 1) * C + xp.arange(C)).reshape(-1)    # (N * C,) positions in dW
    xp.add.at(dW.reshape(-1), flat, dout.reshape(-1))
    return dW
