"""Grouped-query attention's key/value sharing: repeat each key/value head for its group.

With H query heads and H_kv key/value heads (H divisible by H_kv), query head j reads
key/value head j // (H / H_kv), as transformers' repeat_kv lays it out. H_kv = H is ordinary
multi-head attention, H_kv = 1 multi-query attention. The KV cache holds only H_kv heads.
"""


def repeat_kv_forward(k, n_rep):
    """k: (B, H_kv, T, D)  ->  out: (B, H_kv * n_rep, T, D), head j = k[:, j // n_rep]."""
    B, Hkv, T, D = k.shape
    if n_rep == 1:
        return k, (n_rep,)
    out = k[:, :, None].repeat(n_rep, axis=2)             # (B, H_kv, n_rep, T, D)
    return out.reshape(B, Hkv * n_rep, T, D), (n_rep,)    # (B, H, T, D)


def repeat_kv_backward(dout, cache):
    """dk[:, i] = sum over the n_rep query heads of group i of dout: every copy is a use of k."""
    (n_rep,) = cache
    B, H, T, D = dout.shape
    if n_rep == 1:
        return dout
    return dout.reshape(B, H // n_rep, n_rep, T, D).sum(axis=2)   # (B, H_kv, T, D)


def check_gqa_heads(num_attention_heads, num_key_value_heads):
    """n_rep = H / H_kv, or a ValueError naming both numbers."""
    if num_key_value_heads < 1 or num_attention_heads % num_key_value_heads:
        raise ValueError(f"num_attention_heads ({num_attention_heads}) must be a multiple of "
                         f"num_key_value_heads ({num_key_value_heads}): each key/value head "
                         "serves an equal group of query heads")
    return num_attention_heads // num_key_value_heads
