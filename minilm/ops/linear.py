"""Affine map y = x W + b, with W stored (in, out) so the code reads like the math.

float16 inputs take the mixed-precision path of `half_matmul`: products and sums in
float32, one rounding to float16 at the end (what a GPU's tensor cores do).
"""


def is_half(a):
    """True for a float16 array: the ops' mixed-precision branches (see half_matmul)."""
    return a.dtype.kind == "f" and a.dtype.itemsize == 2


def half_matmul(a, b, bias=None, float32_out=False):
    """a @ b as a GPU tensor core computes it in float16 mixed precision.

    The operands are rounded to float16 (they are already, except a float32 gradient that
    enters a product, as FlashAttention's dS does), every product and the running sum are
    float32, and the result is rounded to float16 once: returned in float32 instead when
    `float32_out` (for a float32 consumer, the softmax). `bias` is added in float32 before
    that rounding, as cuBLASLt's bias epilogue does.

    On NumPy this is casts around a float32 product (sgemm), and the numbers are the
    tensor core's: float32 holds every float16 exactly; a product of two float16 numbers
    (11-bit significands) needs at most 22 bits, so sgemm's float32 products are exact, as
    the tensor core's are; the additions are float32 in both. What differs: the order of
    the float32 additions (BLAS and cuBLAS block the sum differently: a few units of 2^-24
    relative, far below float16's rounding of 2^-11), and NVIDIA tensor cores (Volta to
    Ampere) that truncate rather than round the addends they align inside one block of
    the sum (Fasi, Higham, Mikaitis and Pranesh, 2021), which costs the GPU up to a few
    units of 2^-24 per block more. Overflow is the same: a result above 65504 becomes inf
    in both, which is what the loss scaler watches for.
    (NumPy's own float16 `@` would round every partial sum to float16: no GPU does that.)
    """
    a32 = (a if is_half(a) else a.astype("float16")).astype("float32")
    b32 = (b if is_half(b) else b.astype("float16")).astype("float32")
    out = a32 @ b32                                       # float32 products and sums
    if bias is not None:
        out += bias
    return out if float32_out else out.astype("float16")


def linear_forward(x, W, b=None):
    """x: (..., Cin), W: (Cin, Cout), b: (Cout,) or None  ->  out: (..., Cout)

        out = x @ W + b
    float16 x: through `half_matmul` (float32 accumulation, float16 result).
    """
    Cin, Cout = W.shape
    if is_half(x):                                        # float16: see half_matmul
        out = half_matmul(x.reshape(-1, Cin), W, bias=b)  # (N, Cout)
        return out.reshape(x.shape[:-1] + (Cout,)), (x, W, b is not None)
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
    if is_half(x):                                        # float16: float32 sums, float16 results
        db = d2.sum(axis=0, dtype="float32").astype("float16") if has_bias else None
        return half_matmul(d2, W.T).reshape(x.shape), half_matmul(x2.T, d2), db
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
