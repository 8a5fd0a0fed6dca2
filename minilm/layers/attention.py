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
- `forward_cached` / `forward_memory`: decoding with a key/value cache (no backward).
- `enable_head_gates()`: a gate g_h on each head, the gradient w.r.t. the gates (head
  importance, Michel et al. 2019) and `prune_heads` (minilm.compress.prune).

After each forward, `attention_probs` holds the softmax output P (B, H, T, S), before
attention dropout: what `output_attentions=True` returns.
"""
from ..backend import get_xp
from ..ops import (attention_backward, attention_forward, causal_mask, merge_heads,
                   split_heads)
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
    """

    def __init__(self, d_model, n_head, dropout=0.0, dtype="float32", rng=None, std=0.02,
                 names=("query", "key", "value", "out_proj"), dropout_rng=None, causal=False,
                 fused=False, proj_std=None, resid_pdrop=None):
        if d_model % n_head:
            raise ValueError(f"d_model ({d_model}) must be divisible by the number of heads ({n_head})")
        if len(names) != (2 if fused else 4):
            raise ValueError(f"names must be {'(qkv, out)' if fused else '(q, k, v, out)'}, got {names}")
        self.n_head = n_head
        self.head_dim = d_model // n_head          # D stays fixed when heads are pruned
        self.causal = causal
        self.fused = fused
        self.names = names
        if fused:
            self.qkv = Linear(d_model, 3 * d_model, dtype=dtype, rng=rng, std=std)
        else:
            self.q = Linear(d_model, d_model, dtype=dtype, rng=rng, std=std)
            self.k = Linear(d_model, d_model, dtype=dtype, rng=rng, std=std)
            self.v = Linear(d_model, d_model, dtype=dtype, rng=rng, std=std)
        self.o = (Linear(d_model, d_model, dtype=dtype, rng=rng, std=std if proj_std is None else proj_std)
                  if names[-1] else None)
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
        return kids + ([("resid_dropout", self.resid_dropout)] if self.resid_dropout is not None else [])

    # -- q, k, v ------------------------------------------------------------------------------
    def _qkv(self, x, kv):
        """(B, T, C) queries' input, (B, S, C) keys' input -> q (B, H, T, D), k, v (B, H, S, D)"""
        H, D = self.n_head, self.head_dim
        if self.fused:
            if kv is not x:
                raise ValueError("a fused q/k/v projection attends over its own input only")
            B, T, _ = x.shape
            qkv = self.qkv.forward(x).reshape(B, T, 3, H, D)              # (B, T, 3, H, D)
            return qkv.transpose(2, 0, 3, 1, 4)                           # 3 x (B, H, T, D)
        return (split_heads(self.q.forward(x), H), split_heads(self.k.forward(kv), H),
                split_heads(self.v.forward(kv), H))

    def _out(self, y, dropout=True):
        """(B, H, T, D) heads -> (B, T, C): gates, concatenation, W_o, output dropout."""
        if self.gate is not None:
            y = y * self.gate[None, :, None, None]                        # g_h y_h
        out = merge_heads(y)                                              # (B, T, H D)
        if self.o is not None:
            out = self.o.forward(out)
        return self.resid_dropout.forward(out) if (dropout and self.resid_dropout is not None) else out

    # -- training: forward and backward -------------------------------------------------------
    def forward(self, x, kv=None, key_mask=None):
        """x: (B, T, C) queries; kv: (B, S, C) keys/values source (None: x itself);
        key_mask: bool broadcastable to (B, 1, 1, S), False = padding.  ->  (B, T, C)"""
        self_attn = kv is None
        kv = x if self_attn else kv
        xp = get_xp(x)
        q, k, v = self._qkv(x, kv)                                        # (B, H, T|S, D)
        mask = key_mask
        if self.causal:
            cm = causal_mask(xp, x.shape[1], kv.shape[1])                 # (T, S)
            mask = cm if mask is None else (mask & cm)
        rng = _generator(self.dropout_rng) if (self.training and self.attn_pdrop > 0) else None
        y, attn_cache = attention_forward(q, k, v, mask, self.attn_pdrop, rng)   # (B, H, T, D)
        self.attention_probs = attn_cache[4]                              # P, before dropout
        self.cache = (attn_cache, y if self.gate is not None else None, self_attn)
        return self._out(y)

    def backward(self, dout):
        """(B, T, C) -> dx, or (dx, dkv) for cross-attention."""
        attn_cache, y, self_attn = self._check_cache()
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
        dq, dk, dv = attention_backward(dy, attn_cache)
        # undo: q = x W_q + b_q,  k = m W_k + b_k,  v = m W_v + b_v
        dx = self.q.backward(merge_heads(dq))                             # (B, T, C)
        dkv = self.k.backward(merge_heads(dk)) + self.v.backward(merge_heads(dv))   # (B, S, C)
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

    def forward_cached(self, x, past_k, past_v, pos):
        """Self-attention for new positions pos .. pos+t-1, x: (B, t, C); past_k, past_v:
        (B, H0, Tmax, D) buffers holding the keys and values of positions < pos, filled here at
        [pos, pos+t) (only the first H heads once heads are pruned). Returns (B, t, C)."""
        def run():
            q, k, v = self._qkv(x, x)                                     # (B, H, t, D)
            H, t = self.n_head, x.shape[1]
            past_k[:, :H, pos:pos + t] = k
            past_v[:, :H, pos:pos + t] = v
            S = pos + t
            y, _ = attention_forward(q, past_k[:, :H, :S], past_v[:, :H, :S],
                                     causal_mask(get_xp(x), t, S))
            return self._out(y, dropout=False)
        return self._inference(run)

    def project_memory(self, memory):
        """Cross-attention keys and values of an encoder output, projected once per source:
        (N, S, C) -> (k, v) each (N, H, S, D)."""
        H = self.n_head
        return self._inference(lambda: (split_heads(self.k.forward(memory), H),
                                        split_heads(self.v.forward(memory), H)))

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
        self.n_head = len(keep)
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
