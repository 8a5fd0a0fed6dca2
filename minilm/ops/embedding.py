"""Embedding lookup: rows of a table picked by integer ids."""
from ..backend import get_xp


def embedding_forward(ids, W):
    """ids: (...) integers in [0, V), W: (V, C)  ->  out: (..., C),  out[i] = W[ids[i]]"""
    return W[ids], (ids, W.shape)


def embedding_backward(dout, cache):
    """dW[v] = sum of dout[i] over every position i with ids[i] == v.

    A repeated id must collect every contribution, so this is a scatter-add (`add.at`),
    never `dW[ids] = dout` (which would keep only the last one).
    """
    ids, (V, C) = cache
    xp = get_xp(dout)
    dW = xp.zeros((V, C), dtype=dout.dtype)
    xp.add.at(dW, ids.reshape(-1), dout.reshape(-1, C))
    return dW
