"""Embedding lookup: rows of a table picked by integer ids."""
from ..backend import get_xp, on_device

ONEHOT_BLOCK_BYTES = 64 << 20          # scatter_rows' one-hot matrix, a block of positions at a time


def embedding_forward(ids, W):
    """ids: (...) integers in [0, V), W: (V, C)  ->  out: (..., C),  out[i] = W[ids[i]]

    ids given as a NumPy array (or list) are moved to W's backend first: a GPU would take
    them as an index, but the backward's scatter-add needs them beside dW."""
    ids = get_xp(W).asarray(ids)
    return W[ids], (ids, W.shape)


def embedding_backward(dout, cache):
    """dW[v] = sum of dout[i] over every position i with ids[i] == v.

    A repeated id must collect every contribution, so this is a scatter-add, never
    `dW[ids] = dout` (which would keep only the last one); see scatter_rows.
    """
    if dout.dtype.itemsize < 4:                           # float16: add up in float32, round once
        return embedding_backward(dout.astype("float32"), cache).astype(dout.dtype)
    ids, (V, C) = cache
    if ids.shape != dout.shape[:-1]:
        # ids broadcast against dout (positions (1, T) shared by a batch (B, T, C)): every row
        # that read the same id adds into it, so sum those rows first
        shared = tuple(a for a, (n, m) in enumerate(zip(ids.shape, dout.shape[:-1])) if n != m)
        dout = dout.sum(axis=shared, keepdims=True)
    return scatter_rows(ids.reshape(-1), dout.reshape(-1, C), V)


def scatter_rows(ids, rows, V):
    """ids (N,) in [0, V), rows (N, C)  ->  dW (V, C),  dW[v] = sum of rows[i] with ids[i] == v.

    On NumPy, `add.at` on the flattened table, where entry (v, c) is number v * C + c
    (several times faster than one index per row). On a GPU `add.at` is made of atomic
    additions whose order, and so the last bits of a float sum, change from run to run;
    there (and on the strict backend, which stands for it) each distinct id's rows are
    summed by a matrix product with a one-hot matrix instead, in a fixed order, so two
    identical runs give identical bits (what a resumed or repeated run is checked by):

        onehot[v, i] = (ids[i] == v)    (V, N)
        dW = onehot @ rows              (V, C)

    when the one-hot matrix is small (at most ONEHOT_BLOCK_BYTES: a char-level vocabulary,
    a position table), else over the U distinct ids only, a block of positions at a time:

        uniq, inv = unique(ids)         ids[i] == uniq[inv[i]]
        dW[uniq] = onehot(inv) @ rows   (U, C), U N C multiply-adds

    (GPT-2 small, 8 x 1024 tokens: U about 7,500, some 50 GFLOP). `unique` sorts and must
    read U on the host, a synchronisation the small case avoids. On the H200 the unique
    path made GPT-2 small's fp32 step 336 ms against 321 ms with add.at (BENCHMARKS.md).
    """
    xp = get_xp(rows)
    N, C = rows.shape
    if not on_device(rows):
        dW = xp.zeros((V, C), dtype=rows.dtype)
        flat = (ids.reshape(-1, 1) * C + xp.arange(C)).reshape(-1)    # (N * C,) positions in dW
        xp.add.at(dW.reshape(-1), flat, rows.reshape(-1))
        return dW
    if V * N * rows.itemsize <= ONEHOT_BLOCK_BYTES:                  # every id at once
        onehot = (xp.arange(V)[:, None] == ids[None, :]).astype(rows.dtype)   # (V, N)
        return onehot @ rows
    uniq, inv = xp.unique(ids, return_inverse=True)                 # (U,), (N,)
    U = uniq.shape[0]
    acc = xp.zeros((U, C), dtype=rows.dtype)
    block = max(1, ONEHOT_BLOCK_BYTES // (U * rows.itemsize))
    which = xp.arange(U)[:, None]                                   # (U, 1)
    for a in range(0, N, block):
        onehot = (which == inv[None, a:a + block]).astype(rows.dtype)   # (U, n)
        acc += onehot @ rows[a:a + block]
    dW = xp.zeros((V, C), dtype=rows.dtype)
    dW[uniq] = acc
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
    table = ids2 + V * xp.arange(B)[:, None]                        # example b's ids in [b V, (b + 1) V)
    return scatter_rows(table.reshape(-1), dout.reshape(-1, C), B * V).reshape(B, V, C)
