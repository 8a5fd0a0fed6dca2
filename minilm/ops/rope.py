"""Rotary position embeddings (RoPE), in the rotate-half layout transformers uses.

Each query/key head vector of width D is cut into D/2 pairs, and pair i is rotated by the
angle  pos * theta^(-2i/D).  The dot product q_m . k_n of two rotated vectors then depends
only on m - n, which is how RoPE carries relative position into attention.

Layouts. The RoFormer paper pairs neighbours, (x_0, x_1), (x_2, x_3), ... ("interleaved").
transformers' Llama/Qwen pair the two halves, (x_i, x_{i + D/2}) ("rotate-half"): with
x = [x1 | x2],  rotate_half(x) = [-x2 | x1]  and  out = x * cos + rotate_half(x) * sin,
where cos/sin hold each pair's angle twice, [angles | angles]. The two are the same rotation
up to a fixed permutation of the D channels: interleaved(x) = unperm(rotate_half_rope(x[perm]))
with perm = [0, 2, 4, ..., 1, 3, 5, ...] (`interleaved_to_half`). That is why checkpoints
converted from Meta's interleaved release permute the rows of W_q and W_k once, on
conversion, instead of changing the op (tests/test_llama.py checks the identity).
"""
from ..backend import get_xp


def rope_tables(positions, head_dim, theta=10000.0, dtype=None):
    """cos, sin tables: positions (..., T) integer  ->  cos, sin: (..., T, D).

        inv_freq_i = theta^(-2i/D), i < D/2      angle = pos * inv_freq      cos = cos([angle | angle])
    """
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of channels: head_dim must be even, got {head_dim}")
    xp = get_xp(positions)
    dtype = dtype or "float64"
    inv_freq = 1.0 / (theta ** (xp.arange(0, head_dim, 2, dtype="float64") / head_dim))   # (D/2,)
    angle = positions[..., None].astype("float64") * inv_freq      # (..., T, D/2)
    angle = xp.concatenate([angle, angle], axis=-1)                # (..., T, D)
    return xp.cos(angle).astype(dtype), xp.sin(angle).astype(dtype)


def rotate_half(x):
    """[x1 | x2] -> [-x2 | x1] on the last axis (a 90-degree turn of every pair)."""
    xp = get_xp(x)
    half = x.shape[-1] // 2
    return xp.concatenate([-x[..., half:], x[..., :half]], axis=-1)   # (..., D)


def rope_forward(x, cos, sin):
    """Rotate every pair of channels of every head by its position's angle.

    x: (B, H, T, D), cos, sin: (B, T, D) (or (T, D))  ->  out: (B, H, T, D)
        out = x * cos + rotate_half(x) * sin
    """
    D = x.shape[-1]
    if D % 2:
        raise ValueError(f"RoPE rotates pairs of channels: head_dim must be even, got {D}")
    if cos.ndim == 3:
        cos, sin = cos[:, None], sin[:, None]             # (B, 1, T, D): same for every head
    return x * cos + rotate_half(x) * sin, (cos, sin)     # (B, H, T, D)


def rope_backward(dout, cache):
    """dx: the rotation by -angle, the transpose (and inverse) of the forward's rotation.

        out = R x  with R orthogonal  =>  dx = R^T dout = dout * cos - rotate_half(dout * sin)
    (rotate_half^T = -rotate_half: [y1 | y2] -> [y2 | -y1].)
    """
    cos, sin = cache
    return dout * cos - rotate_half(dout * sin)           # (B, H, T, D)


def interleaved_to_half(D, xp=None):
    """perm with x[..., perm] taking the interleaved pairing (2i, 2i+1) to the halves (i, i + D/2)."""
    xp = xp or get_xp()
    return xp.concatenate([xp.arange(0, D, 2), xp.arange(1, D, 2)])   # (D,)
