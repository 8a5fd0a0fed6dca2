"""Affine map y = x W + b, with W stored (in, out) so the code reads like the math."""


def linear_forward(x, W, b=None):
    """x: (..., Cin), W: (Cin, Cout), b: (Cout,) or None  ->  out: (..., Cout)

        out = x @ W + b
    """
    Cin, Cout = W.shape
    out = x.reshape(-1, Cin) @ W                          # (N, Cout): one matrix product for all rows
    if b is not None:
        out += b
    return out.reshape(x.shape[:-1] + (Cout,)), (x, W, b is not None)


def linear_backward(dout, cache):
    """Returns (dx, dW, db); db is None when the forward had no bias.

        dx = dout @ W^T          dW = sum over rows of x^T dout          db = sum over rows of dout
    The leading axes (...) are flattened into one row axis N, so dW is one matrix product.
    """
    x, W, has_bias = cache
    Cin, Cout = W.shape
    x2 = x.reshape(-1, Cin)                               # (N, Cin)
    d2 = dout.reshape(-1, Cout)                           # (N, Cout)
    dx = (d2 @ W.T).reshape(x.shape)                      # (..., Cin)
    dW = x2.T @ d2                                        # (Cin, Cout)
    db = d2.sum(axis=0) if has_bias else None             # (Cout,)
    return dx, dW, db


def linear_per_example_grads(dout, cache):
    """Each example's own (dW, db), for DP-SGD: x, dout with leading axis B (the examples).

    x: (B, ..., Cin), dout: (B, ..., Cout)  ->  dW: (B, Cin, Cout), db: (B, Cout) or None
        dW_b = sum over example b's rows of x_b^T dout_b       db_b = sum over b's rows of dout_b
    Summed over b they are linear_backward's dW and db.
    """
    x, W, has_bias = cache
    Cin, Cout = W.shape
    B = x.shape[0]
    x3 = x.reshape(B, -1, Cin)                            # (B, rows, Cin)
    d3 = dout.reshape(B, -1, Cout)                        # (B, rows, Cout)
    dW = x3.swapaxes(1, 2) @ d3                           # (B, Cin, Cout)
    db = d3.sum(axis=1) if has_bias else None             # (B, Cout)
    return dW, db
