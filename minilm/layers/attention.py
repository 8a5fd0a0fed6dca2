"""Multi-head attention layers.

`CausalSelfAttention` is GPT-2's: one fused projection `c_attn` makes q, k and v, then
`c_proj` mixes the heads. `MultiHeadAttention` (BERT, the encoder-decoder) has separate
query / key / value projections and can attend over another sequence (cross-attention).
"""
from ..backend import get_xp
from ..ops import (attention_backward, attention_forward, causal_mask, merge_heads,
                   split_heads)
from .base import Module
from .linear import Dropout, Linear


class CausalSelfAttention(Module):
    """x -> c_proj(merge(softmax(q k^T / sqrt(D) + causal mask) v)), q, k, v = split(c_attn(x))."""

    def __init__(self, n_embd, n_head, attn_pdrop=0.0, resid_pdrop=0.0, dtype="float32",
                 rng=None, std=0.02, proj_std=0.02, dropout_rng=None):
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.c_attn = Linear(n_embd, 3 * n_embd, dtype=dtype, rng=rng, std=std)
        self.c_proj = Linear(n_embd, n_embd, dtype=dtype, rng=rng, std=proj_std)
        self.resid_dropout = Dropout(resid_pdrop, dropout_rng)
        self.attn_pdrop = attn_pdrop
        self.dropout_rng = dropout_rng
        self.attention_probs = None     # the last forward's softmax output P (B, H, T, S), public
        self.cache = None

    def named_children(self):
        return [("c_attn", self.c_attn), ("c_proj", self.c_proj), ("resid_dropout", self.resid_dropout)]

    def forward(self, x, key_mask=None):
        """x: (B, T, C), key_mask: (B, 1, 1, T) bool (False = padding) or None -> (B, T, C)"""
        B, T, C = x.shape
        xp = get_xp(x)
        qkv = self.c_attn.forward(x)                                  # (B, T, 3C)
        qkv = qkv.reshape(B, T, 3, self.n_head, C // self.n_head)     # (B, T, 3, H, D)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)                        # 3 x (B, H, T, D)
        mask = causal_mask(xp, T)                                     # (T, T)
        if key_mask is not None:
            mask = mask & key_mask                                    # (B, 1, T, T)
        rng = self.dropout_rng() if (self.training and self.attn_pdrop > 0 and self.dropout_rng) else None
        y, attn_cache = attention_forward(q, k, v, mask, self.attn_pdrop, rng)  # (B, H, T, D)
        self.attention_probs = attn_cache[4]                          # P (B, H, T, T), before dropout
        self.cache = (attn_cache, (B, T, C))
        out = self.c_proj.forward(merge_heads(y))                     # (B, T, C)
        return self.resid_dropout.forward(out)

    def backward(self, dout):                                         # (B, T, C) -> (B, T, C)
        attn_cache, (B, T, C) = self._check_cache()
        H = self.n_head
        xp = get_xp(dout)
        # undo: out = dropout(c_proj(merge(y)))
        dy = self.c_proj.backward(self.resid_dropout.backward(dout))  # (B, T, C)
        dy = dy.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)        # (B, H, T, D)
        # undo: y = attention(q, k, v), and q, k, v = split(c_attn(x)): the three gradients
        # are written straight into one buffer laid out like c_attn's output
        dqkv = xp.empty((B, T, 3, H, C // H), dtype=dout.dtype)      # (B, T, 3, H, D)
        attention_backward(dy, attn_cache, out=tuple(dqkv.transpose(2, 0, 3, 1, 4)))  # 3 x (B, H, T, D)
        return self.c_attn.backward(dqkv.reshape(B, T, 3 * C))

    def forward_cached(self, x, past_k, past_v, pos):
        """Inference with a KV cache (no backward).

        x: (B, t, C) new positions pos .. pos+t-1; past_k, past_v: (B, H, Tmax, D) buffers,
        filled here at [pos, pos+t). Returns (B, t, C).
        """
        B, t, C = x.shape
        xp = get_xp(x)
        qkv = self.c_attn.forward(x).reshape(B, t, 3, self.n_head, C // self.n_head)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)                        # 3 x (B, H, t, D)
        past_k[:, :, pos:pos + t] = k
        past_v[:, :, pos:pos + t] = v
        S = pos + t
        y, _ = attention_forward(q, past_k[:, :, :S], past_v[:, :, :S], causal_mask(xp, t, S))
        self.c_attn.cache = None
        out = self.c_proj.forward(merge_heads(y))
        self.c_proj.cache = None
        return out


class MultiHeadAttention(Module):
    """Attention with separate projections, over the same sequence or another one.

        q = x_q W_q + b_q,  k = x_kv W_k + b_k,  v = x_kv W_v + b_v      (split into H heads)
        out = concat_h(softmax(q_h k_h^T / sqrt(D), mask) v_h) W_o + b_o
    `names` gives the four projections' checkpoint names (BERT: query, key, value and the
    output dense layer, which BERT keeps in another module; pass out_name=None to leave W_o
    to the caller).
    """

    def __init__(self, d_model, n_head, dropout=0.0, dtype="float32", rng=None, std=0.02,
                 names=("query", "key", "value", "out_proj"), dropout_rng=None, causal=False):
        if d_model % n_head:
            raise ValueError(f"d_model ({d_model}) must be divisible by the number of heads ({n_head})")
        self.n_head = n_head
        self.causal = causal
        self.names = names
        self.q = Linear(d_model, d_model, dtype=dtype, rng=rng, std=std)
        self.k = Linear(d_model, d_model, dtype=dtype, rng=rng, std=std)
        self.v = Linear(d_model, d_model, dtype=dtype, rng=rng, std=std)
        self.o = Linear(d_model, d_model, dtype=dtype, rng=rng, std=std) if names[3] else None
        self.attn_pdrop = dropout
        self.dropout_rng = dropout_rng
        self.attention_probs = None     # the last forward's softmax output P (B, H, T, S), public
        self.cache = None

    def named_children(self):
        kids = [(self.names[0], self.q), (self.names[1], self.k), (self.names[2], self.v)]
        return kids + ([(self.names[3], self.o)] if self.o is not None else [])

    def forward(self, x, kv=None, key_mask=None):
        """x: (B, T, C) queries; kv: (B, S, C) keys/values source (None: x itself);
        key_mask: bool broadcastable to (B, 1, 1, S), False = padding.  ->  (B, T, C)"""
        self_attn = kv is None
        kv = x if self_attn else kv
        xp = get_xp(x)
        H = self.n_head
        T, S = x.shape[1], kv.shape[1]
        q = split_heads(self.q.forward(x), H)                         # (B, H, T, D)
        k = split_heads(self.k.forward(kv), H)                        # (B, H, S, D)
        v = split_heads(self.v.forward(kv), H)                        # (B, H, S, D)
        mask = key_mask
        if self.causal:
            cm = causal_mask(xp, T, S)
            mask = cm if mask is None else (mask & cm)
        rng = self.dropout_rng() if (self.training and self.attn_pdrop > 0 and self.dropout_rng) else None
        y, attn_cache = attention_forward(q, k, v, mask, self.attn_pdrop, rng)
        self.attention_probs = attn_cache[4]                          # P (B, H, T, S), before dropout
        self.cache = (attn_cache, self_attn)
        y = merge_heads(y)                                            # (B, T, C)
        return self.o.forward(y) if self.o is not None else y

    def backward(self, dout):
        """Returns dx, or (dx, dkv) for cross-attention."""
        attn_cache, self_attn = self._check_cache()
        H = self.n_head
        dy = self.o.backward(dout) if self.o is not None else dout    # (B, T, C)
        dq, dk, dv = attention_backward(split_heads(dy, H), attn_cache)
        dx = self.q.backward(merge_heads(dq))                         # (B, T, C)
        dkv = self.k.backward(merge_heads(dk)) + self.v.backward(merge_heads(dv))  # (B, S, C)
        if self_attn:
            return dx + dkv
        return dx, dkv
