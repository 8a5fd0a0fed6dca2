"""Multi-head attention: one layer for every model.

    q = x W_q + b_q,  k = m W_k + b_k,  v = m W_v + b_v       m = x (self-attention) or the
                                                              encoder output (cross-attention)
    y_h = softmax(q_h k_h^T / sqrt(D) + masks) v_h            for each of the H heads
    out = concat_h(g_h y_h) W_o + b_o                         g_h = 1 unless head gates are on

What differs between the models is an argument, not a copy:
- `fused=True`: one projection makes q, k and v together (GPT-2's `c_attn`, weight (C, 3C));
  otherwise three (`query` / `key` / `value` in BERT, `q_proj` / ... in nn.Transformer).
- `names`: the projections' checkpoint names; an output name of None leaves W_o to the
  caller (BERT keeps it in `attention.output.dense`).
- `causal=True` adds the causal mask; `key_mask` (B, 1, 1, S) the padding mask.
- The modern decoders (Llama, Qwen3): `n_kv_head` < H key/value heads shared by groups of
  query heads (grouped-query attention; backward sums over each group), `head_dim` D set
  apart from C / H, `bias=False`, `rotary=True` (q and k rotated by RoPE at each token's
  position: `forward(..., rope=(cos, sin))`), and `q_norm` / `k_norm` (Qwen3: a norm on each
  query and key head before the rotation):

    q_h = rope(q_norm((x W_q)_h)),  k_g = rope(k_norm((x W_k)_g)),  v_g = (x W_v)_g
    y_h = softmax(q_h k_g^T / sqrt(D) + masks) v_g          g = h // (H / H_kv)
- `forward_cached` / `forward_memory`: decoding with a key/value cache (no backward).
- `enable_head_gates()`: a gate g_h on each head, the gradient w.r.t. the gates (head
  importance, Michel et al. 2019) and `prune_heads` (minilm.compress.prune).

After each forward, `attention_probs` holds the softmax output P (B, H, T, S), before
attention dropout: what `output_attentions=True` returns.
"""
from ..backend import get_xp
from ..ops import (attention_backward, attention_forward, causal_mask, check_gqa_heads, merge_heads,
                   repeat_kv_backward, repeat_kv_forward, rope_backward, rope_forward, split_heads)
from .base import Module
from .linear import Dropout, Linear


def _generator(rng):
    """The dropout Generator: `rng` itself, or what a callable `rng` returns (None: no dropout)."""
    return rng() if callable(rng) else rng


def _shrink(linear, index, axis):
    """Keep only `index` along `axis` of a Linear's weight (0: input rows, 1: output columns,
    which also cuts the bias)."""
    linear.weight.data = linear.weight.data.take(index, axis=axis)
    linear.weight.grad = get_xp(linear.weight.data).zeros_like(linear.weight.data)
    if axis == 1 and linear.bias is not None:
        linear.bias.data = linear.bias.data[index].copy()
        linear.bias.grad = get_xp(linear.bias.data).zeros_like(linear.bias.data)


class MultiHeadAttention(Module):
    """Attention over the same sequence (self) or another one (cross); see the module docstring.

        names:   (q, k, v, out) names, or (qkv, out) with fused=True; out may be None
        resid_pdrop: dropout on the output (GPT-2 keeps it inside the attention module,
                 as `resid_dropout`); 0 and no such child otherwise
        n_kv_head: H_kv key/value heads (None: H); H must be a multiple of it
        head_dim: D (None: d_model // H); q is (C, H D), k and v (C, H_kv D), W_o (H D, C)
        bias:    biases on the four projections
        rotary:  rotate q and k by RoPE; forward then needs rope=(cos, sin)
        q_norm, k_norm: modules applied to each (B, heads, T, D) query / key head before the
                 rotation (Qwen3's RMSNorm over D), or None
    """

    def __init__(self, d_model, n_head, dropout=0.0, dtype="float32", rng=None, std=0.02,
                 names=("query", "key", "value", "out_proj"), dropout_rng=None, causal=False,
                 fused=False, proj_std=None, resid_pdrop=None, n_kv_head=None, head_dim=None,
                 bias=True, rotary=False, q_norm=None, k_norm=None):
        if head_dim is None and d_model % n_head:
            raise ValueError(f"d_model ({d_model}) must be divisible by the number of heads ({n_head})")
        if len(names) != (2 if fused else 4):
            raise ValueError(f"names must be {'(qkv, out)' if fused else '(q, k, v, out)'}, got {names}")
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        self.n_rep = check_gqa_heads(n_head, n_kv_head)  # query heads per key/value head
        if fused and (n_kv_head != n_head or head_dim is not None or rotary or q_norm is not None):
            raise ValueError("fused=True is GPT-2's c_attn: H key/value heads of width C / H, "
                             "no rotary positions, no q/k norms")
        if (q_norm is None) != (k_norm is None):
            raise ValueError("q_norm and k_norm come together (Qwen3 normalises both)")
        self.n_head = n_head
        self.n_kv_head = n_kv_head
        self.head_dim = d_model // n_head if head_dim is None else head_dim  # D stays fixed when heads are pruned
        self.causal = causal
        self.fused = fused
        self.rotary = rotary
        self.names = names
        HD, KD = n_head * self.head_dim, n_kv_head * self.head_dim
        if fused:
            self.qkv = Linear(d_model, 3 * d_model, bias, dtype=dtype, rng=rng, std=std)
        else:
            self.q = Linear(d_model, HD, bias, dtype=dtype, rng=rng, std=std)
            self.k = Linear(d_model, KD, bias, dtype=dtype, rng=rng, std=std)
            self.v = Linear(d_model, KD, bias, dtype=dtype, rng=rng, std=std)
        self.o = (Linear(HD, d_model, bias, dtype=dtype, rng=rng, std=std if proj_std is None else proj_std)
                  if names[-1] else None)
        self.q_norm, self.k_norm = q_norm, k_norm
        self.resid_dropout = Dropout(resid_pdrop, dropout_rng) if resid_pdrop is not None else None
        self.attn_pdrop = dropout
        self.dropout_rng = dropout_rng
        self.gate = None                # (H,) head gates, after enable_head_gates()
        self.attention_probs = None     # the last forward's softmax output P (B, H, T, S), public
        self.cache = None

    def named_children(self):
        projections = [self.qkv] if self.fused else [self.q, self.k, self.v]
        kids = list(zip(self.names, projections + [self.o]))
        if self.o is None:
            kids = kids[:-1]
        if self.q_norm is not None:
            kids += [("q_norm", self.q_norm), ("k_norm", self.k_norm)]
        return kids + ([("resid_dropout", self.resid_dropout)] if self.resid_dropout is not None else [])

    # -- q, k, v ------------------------------------------------------------------------------
    def _qkv(self, x, kv, rope=None):
        """(B, T, C) queries' input, (B, S, C) keys' input -> q (B, H, T, D), k, v (B, H_kv, S, D),
        and the rotation's cache (None without RoPE)."""
        H, D = self.n_head, self.head_dim
        if self.rotary and rope is None:
            raise ValueError("this attention is rotary: pass rope=(cos, sin), the RoPE tables "
                             "(B or 1, T, D) at each token's position (minilm.ops.rope_tables)")
        if self.fused:
            if kv is not x:
                raise ValueError("a fused q/k/v projection attends over its own input only")
            B, T, _ = x.shape
            qkv = self.qkv.forward(x).reshape(B, T, 3, H, D)              # (B, T, 3, H, D)
            q, k, v = qkv.transpose(2, 0, 3, 1, 4)                        # 3 x (B, H, T, D)
            return q, k, v, None
        q = split_heads(self.q.forward(x), H)                             # (B, H, T, D)
        k = split_heads(self.k.forward(kv), self.n_kv_head)               # (B, H_kv, S, D)
        v = split_heads(self.v.forward(kv), self.n_kv_head)               # (B, H_kv, S, D)
        if self.q_norm is not None:                                       # Qwen3: each head normalised
            q, k = self.q_norm.forward(q), self.k_norm.forward(k)
        rope_cache = None
        if rope is not None:                                              # rotate by position
            if not self.rotary:
                raise ValueError("rope tables given to an attention built with rotary=False")
            if kv is not x:
                raise ValueError("rotary positions are for self-attention (q and k share positions)")
            cos, sin = rope
            q, rope_cache = rope_forward(q, cos, sin)                     # (B, H, T, D)
            k, _ = rope_forward(k, cos, sin)                              # (B, H_kv, S, D)
        return q, k, v, rope_cache

    def _qkv_backward(self, dq, dk, dv, rope_cache):
        """Undo _qkv: dq (B, H, T, D), dk, dv (B, H_kv, S, D) -> dx (B, T, C), dkv (B, S, C)."""
        if rope_cache is not None:
            # undo: q, k = rope(q), rope(k)   (the rotation back, by -angle)
            dq, dk = rope_backward(dq, rope_cache), rope_backward(dk, rope_cache)
        if self.q_norm is not None:
            # undo: q, k = q_norm(q), k_norm(k)
            dq, dk = self.q_norm.backward(dq), self.k_norm.backward(dk)
        # undo: q = x W_q + b_q,  k = m W_k + b_k,  v = m W_v + b_v
        dx = self.q.backward(merge_heads(dq))                             # (B, T, C)
        dkv = self.k.backward(merge_heads(dk)) + self.v.backward(merge_heads(dv))   # (B, S, C)
        return dx, dkv

    def _out(self, y, dropout=True):
        """(B, H, T, D) heads -> (B, T, C): gates, concatenation, W_o, output dropout."""
        if self.gate is not None:
            y = y * self.gate[None, :, None, None]                        # g_h y_h
        out = merge_heads(y)                                              # (B, T, H D)
        if self.o is not None:
            out = self.o.forward(out)
        return self.resid_dropout.forward(out) if (dropout and self.resid_dropout is not None) else out

    # -- training: forward and backward -------------------------------------------------------
    def forward(self, x, kv=None, key_mask=None, rope=None):
        """x: (B, T, C) queries; kv: (B, S, C) keys/values source (None: x itself);
        key_mask: bool broadcastable to (B, 1, 1, S), False = padding; rope: (cos, sin)
        (B or 1, T, D) each, for a rotary layer.  ->  (B, T, C)"""
        self_attn = kv is None
        kv = x if self_attn else kv
        xp = get_xp(x)
        q, k, v, rope_cache = self._qkv(x, kv, rope)                      # (B, H|H_kv, T|S, D)
        # grouped-query attention: query head h reads key/value head h // n_rep
        k, rep_cache = repeat_kv_forward(k, self.n_rep)                   # (B, H, S, D)
        v, _ = repeat_kv_forward(v, self.n_rep)                           # (B, H, S, D)
        mask = key_mask
        if self.causal:
            cm = causal_mask(xp, x.shape[1], kv.shape[1])                 # (T, S)
            mask = cm if mask is None else (mask & cm)
        rng = _generator(self.dropout_rng) if (self.training and self.attn_pdrop > 0) else None
        y, attn_cache = attention_forward(q, k, v, mask, self.attn_pdrop, rng)   # (B, H, T, D)
        self.attention_probs = attn_cache[4]                              # P, before dropout
        self.cache = (attn_cache, y if self.gate is not None else None, self_attn, rope_cache, rep_cache)
        return self._out(y)

    def backward(self, dout):
        """(B, T, C) -> dx, or (dx, dkv) for cross-attention."""
        attn_cache, y, self_attn, rope_cache, rep_cache = self._check_cache()
        H, D = self.n_head, self.head_dim
        xp = get_xp(dout)
        # undo: out = dropout(merge(g * y) W_o + b_o)
        if self.resid_dropout is not None:
            dout = self.resid_dropout.backward(dout)
        dy = self.o.backward(dout) if self.o is not None else dout        # (B, T, H D)
        B, T = dy.shape[:2]
        dy = dy.reshape(B, T, H, D).transpose(0, 2, 1, 3)                 # (B, H, T, D)
        if self.gate is not None:
            # undo: yg = g * y:   dg_h = sum dyg_h * y_h,  dy = g_h dyg_h
            if self.collect:                                              # |dL/dg_h| per example
                self.importance += xp.abs((dy * y).sum(axis=(2, 3))).sum(axis=0)
            dy = dy * self.gate[None, :, None, None]
        if self.fused:
            # undo: y = attention(q, k, v), and q, k, v = split(qkv(x)): the three gradients
            # are written straight into one buffer laid out like qkv's output
            dqkv = xp.empty((B, T, 3, H, D), dtype=dout.dtype)            # (B, T, 3, H, D)
            attention_backward(dy, attn_cache, out=tuple(dqkv.transpose(2, 0, 3, 1, 4)))
            return self.qkv.backward(dqkv.reshape(B, T, 3 * H * D))
        # undo: y = attention(q, k, v)
        dq, dk, dv = attention_backward(dy, attn_cache)                   # (B, H, T|S, D)
        # undo: k, v = repeat_kv(k), repeat_kv(v): each key/value head sums its group's gradients
        dk, dv = repeat_kv_backward(dk, rep_cache), repeat_kv_backward(dv, rep_cache)   # (B, H_kv, S, D)
        dx, dkv = self._qkv_backward(dq, dk, dv, rope_cache)
        if self_attn:
            return dx + dkv
        return dx, dkv

    # -- inference with a key/value cache (no backward) ---------------------------------------
    def _inference(self, fn, *args):
        """Run fn and leave no cache behind in this layer or its projections."""
        out = fn(*args)
        for m in self.modules():
            m.cache = None
        return out

    def forward_cached(self, x, past_k, past_v, pos, rope=None):
        """Self-attention for new positions pos .. pos+t-1, x: (B, t, C); past_k, past_v:
        (B, H0_kv, Tmax, D) buffers holding the keys (rotated, for a rotary layer) and values of
        positions < pos, filled here at [pos, pos+t) (only the first H_kv heads once heads are
        pruned). rope: the tables at positions pos .. pos+t-1. Returns (B, t, C).
        The cache holds H_kv heads: grouped-query attention's saving."""
        def run():
            q, k, v, _ = self._qkv(x, x, rope)                            # (B, H|H_kv, t, D)
            H_kv, t = self.n_kv_head, x.shape[1]
            past_k[:, :H_kv, pos:pos + t] = k
            past_v[:, :H_kv, pos:pos + t] = v
            S = pos + t
            k_all, _ = repeat_kv_forward(past_k[:, :H_kv, :S], self.n_rep)   # (B, H, S, D)
            v_all, _ = repeat_kv_forward(past_v[:, :H_kv, :S], self.n_rep)   # (B, H, S, D)
            y, _ = attention_forward(q, k_all, v_all, causal_mask(get_xp(x), t, S))
            return self._out(y, dropout=False)
        return self._inference(run)

    def project_memory(self, memory):
        """Cross-attention keys and values of an encoder output, projected once per source:
        (N, S, C) -> (k, v) each (N, H, S, D) (shared key/value heads already repeated)."""
        if self.rotary or self.q_norm is not None:
            raise ValueError("project_memory: cached cross-attention has no rotary positions or "
                             "q/k norm (this layer was built with them)")
        H_kv = self.n_kv_head

        def run():
            k = split_heads(self.k.forward(memory), H_kv)                 # (N, H_kv, S, D)
            v = split_heads(self.v.forward(memory), H_kv)
            return repeat_kv_forward(k, self.n_rep)[0], repeat_kv_forward(v, self.n_rep)[0]
        return self._inference(run)

    def forward_memory(self, x, memory_k, memory_v, key_mask=None):
        """Cross-attention over keys/values from `project_memory`: x (N, t, C) -> (N, t, C)."""
        def run():
            q = split_heads(self.q.forward(x), self.n_head)               # (N, H, t, D)
            y, _ = attention_forward(q, memory_k, memory_v, key_mask)     # (N, H, t, D)
            return self._out(y, dropout=False)
        return self._inference(run)

    # -- head gates and head pruning ----------------------------------------------------------
    def enable_head_gates(self):
        """Put a gate g_h = 1 on each head (idempotent). `gate` (H,) is a plain array, not a
        Parameter: never trained, not in state_dict. While `collect` is True, each backward
        adds sum over examples of |dL/dg_h| into `importance` (H,)."""
        if self.gate is None:
            like = (self.qkv if self.fused else self.q).weight.data
            xp = get_xp(like)
            self.gate = xp.ones(self.n_head, dtype=like.dtype)
            self.importance = xp.zeros(self.n_head, dtype=like.dtype)
            self.collect = False
        return self

    def prune_heads(self, heads, out_proj=None):
        """Remove the heads `heads` (indices among the current ones): their columns of W_q,
        W_k, W_v and biases, and their rows of W_o (`out_proj`: the caller's W_o when this
        layer has none). Returns the indices kept."""
        if self.n_kv_head != self.n_head:
            raise ValueError(f"prune_heads: this layer shares {self.n_kv_head} key/value heads among "
                             f"{self.n_head} query heads (grouped-query attention); pruning is written "
                             "for one key/value head per query head")
        self.enable_head_gates()
        xp = get_xp(self.gate)
        H, D = self.n_head, self.head_dim
        keep = [h for h in range(H) if h not in set(heads)]
        cols = xp.asarray([h * D + d for h in keep for d in range(D)], dtype=xp.int64)
        if self.fused:                                                # q, k, v side by side
            _shrink(self.qkv, xp.concatenate([cols, cols + H * D, cols + 2 * H * D]), axis=1)
        else:
            for lin in (self.q, self.k, self.v):
                _shrink(lin, cols, axis=1)
        _shrink(self.o if self.o is not None else out_proj, cols, axis=0)
        self.gate, self.importance = self.gate[keep].copy(), self.importance[keep].copy()
        self.n_head = self.n_kv_head = len(keep)
        return keep


class CausalSelfAttention(MultiHeadAttention):
    """GPT-2's attention: causal, fused `c_attn` (C, 3C), `c_proj`, and `resid_dropout`.

        x -> resid_dropout(c_proj(merge(softmax(q k^T / sqrt(D) + causal mask) v))),
             q, k, v = split(c_attn(x))
    """

    def __init__(self, n_embd, n_head, attn_pdrop=0.0, resid_pdrop=0.0, dtype="float32",
                 rng=None, std=0.02, proj_std=0.02, dropout_rng=None):
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        super().__init__(n_embd, n_head, attn_pdrop, dtype, rng, std, names=("c_attn", "c_proj"),
                         dropout_rng=dropout_rng, causal=True, fused=True, proj_std=proj_std,
                         resid_pdrop=resid_pdrop)

    def forward(self, x, key_mask=None):
        """x: (B, T, C), key_mask: (B, 1, 1, T) bool (False = padding) or None -> (B, T, C)"""
        return super().forward(x, key_mask=key_mask)

    # GPT-2's names for the two projections
    @property
    def c_attn(self):
        return self.qkv

    @c_attn.setter
    def c_attn(self, layer):
        self.qkv = layer

    @property
    def c_proj(self):
        return self.o

    @c_proj.setter
    def c_proj(self, layer):
        self.o = layer
