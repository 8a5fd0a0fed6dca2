"""Pruning: unstructured magnitude pruning, and structured attention-head pruning.

Magnitude pruning (Han et al. 2015) zeroes the weights of smallest |w|, either the same
fraction in every layer ("layer") or one threshold over all selected layers ("global", which
lets layers with many small weights lose more). A pruned layer keeps a 0/1 mask M:

    y = x (W * M) + b            so   dW = (x^T dout) * M

The mask in the forward makes the gradient of a pruned weight exactly zero, so no momentum
builds up for it. That alone does not keep it at zero through training: an optimiser that
already holds state for the weight (Adam's m and v from before pruning) still moves it. So
`apply_masks(model)` re-zeroes the pruned weights after every optimiser step:

    out = model(**batch); model.backward(); opt.step(); apply_masks(model)

(Decoupled weight decay, p -= lr wd p, leaves a zero at zero.) The weights stay dense arrays
with zeros: the saving is in what a sparse format or sparse kernel could skip, not in NumPy.

Head pruning (Michel et al. 2019, "Are Sixteen Heads Really Better than One?") removes whole
attention heads, so the matrices physically shrink. Each head's output is multiplied by a
gate g_h (1 by default, not trained):

    y = concat_h(g_h attention_h(x)) W_o + b_o

and a head's importance is how much the loss cares about its gate, summed over examples:

    I_h = sum_examples |dL/dg_h|,        normalised per layer: I_l,h / ||I_l,.||_2

The heads with the smallest normalised importance across the model are removed: their
columns of W_q, W_k, W_v (and biases) and their rows of W_o; every layer keeps at least
one head (a layer with none would leave zero-width matrices). A head whose gate is 0 already
contributes nothing, so removing it leaves the outputs unchanged (a test checks this).
"""
from ..backend import get_xp, to_numpy
from ..layers import CausalSelfAttention, Linear, Module, MultiHeadAttention
from ..ops import (attention_backward, attention_forward, causal_mask, linear_backward,
                   linear_forward, merge_heads, split_heads)
from .modules import block_list, named_modules, replace_module, select


def _check_sparsity(sparsity):
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1) (the fraction of weights set to zero), got {sparsity}")


# ----------------------------------------------------------------------------------------
# Unstructured magnitude pruning
# ----------------------------------------------------------------------------------------

class MaskedLinear(Module):
    """y = x (W * M) + b with a fixed 0/1 mask M (in, out). Same parameter names as Linear."""

    def __init__(self, base, mask=None):
        self.weight, self.bias = base.weight, base.bias
        xp = get_xp(self.weight.data)
        self.mask = xp.ones_like(self.weight.data) if mask is None else mask.astype(self.weight.data.dtype)
        self.weight.data *= self.mask                        # pruned weights start at zero
        self.cache = None

    def own_parameters(self):
        return [("weight", self.weight)] + ([("bias", self.bias)] if self.bias is not None else [])

    def forward(self, x):                                    # (..., in) -> (..., out)
        out, self.cache = linear_forward(x, self.weight.data * self.mask,
                                         None if self.bias is None else self.bias.data)
        return out

    def backward(self, dout):                                # (..., out) -> (..., in)
        """dW = (x^T dout) * M: the chain rule through W * M."""
        dx, dW, db = linear_backward(dout, self._check_cache())
        self.weight.grad += dW * self.mask
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def apply_mask(self):
        self.weight.data *= self.mask

    def to_linear(self):
        """A plain Linear holding the pruned (zeroed) weights."""
        lin = Linear(*self.weight.shape, bias=self.bias is not None, dtype=self.weight.data.dtype)
        lin.weight, lin.bias = self.weight, self.bias
        self.apply_mask()
        return lin


def magnitude_prune(model, sparsity, scope="global", targets=None):
    """Zero the `sparsity` fraction of smallest-|w| weights of the selected Linear layers,
    in place (they become MaskedLinear; already-masked layers get a new, larger mask).

    scope="global": one threshold over all selected weights; "layer": each layer separately.
    targets: None for the Linear layers inside the Transformer blocks (embeddings, pooler and
    heads are left dense), or name fragments (see `modules.select`).
    Returns {layer name: sparsity reached}.
    """
    _check_sparsity(sparsity)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    chosen = [(n, m, p) for n, m, p in named_modules(model)
              if isinstance(m, (Linear, MaskedLinear)) and p is not None and select(n, targets)]
    if not chosen:
        raise ValueError(f"no Linear layer of {type(model).__name__} matches targets={targets!r}")
    layers = []
    for name, m, parent in chosen:
        if isinstance(m, Linear):
            m2 = MaskedLinear(m)
            replace_module(parent, m, m2)
            m = m2
        layers.append((name, m))
    xp = get_xp(layers[0][1].weight.data)

    def threshold(scores):                                   # the k-th smallest |w|, k = sparsity * n
        k = int(round(sparsity * scores.size))
        if k == 0:
            return None
        return xp.partition(scores.reshape(-1), k - 1)[k - 1]

    if scope == "global":
        t = threshold(xp.concatenate([xp.abs(m.weight.data * m.mask).reshape(-1) for _, m in layers]))
        cuts = [t] * len(layers)
    else:
        cuts = [threshold(xp.abs(m.weight.data * m.mask)) for _, m in layers]
    report = {}
    for (name, m), t in zip(layers, cuts):
        if t is not None:
            m.mask = m.mask * (xp.abs(m.weight.data) > t)    # ties at the threshold go too
        m.apply_mask()
        report[name] = 1.0 - float(m.mask.mean())
    return report


def apply_masks(model):
    """Re-zero the pruned weights of every MaskedLinear (call after each optimiser step)."""
    for m in model.modules():
        if isinstance(m, MaskedLinear):
            m.apply_mask()


def remove_masks(model):
    """Replace every MaskedLinear by a Linear with the zeros baked in (pruning made final)."""
    for name, m, parent in list(named_modules(model)):
        if isinstance(m, MaskedLinear):
            replace_module(parent, m, m.to_linear())
    return model


def sparsity(model, targets=None):
    """Fraction of exact zeros among the weights of the selected Linear layers."""
    zeros = total = 0
    for name, m, parent in named_modules(model):
        if isinstance(m, (Linear, MaskedLinear)) and parent is not None and select(name, targets):
            W = m.weight.data
            zeros += int((W == 0).sum())
            total += int(W.size)
    return zeros / max(total, 1)


# ----------------------------------------------------------------------------------------
# Head gates: the op
# ----------------------------------------------------------------------------------------

def head_gate_forward(y, gate):
    """y: (B, H, T, D), gate: (H,)  ->  out: (B, H, T, D),   out = g_h y_h"""
    return y * gate[None, :, None, None], (y, gate)


def head_gate_backward(dout, cache):
    """Returns (dy, dgate):  dy = g_h dout_h,   dgate_h = sum_{B,T,D} dout * y."""
    y, gate = cache
    return dout * gate[None, :, None, None], (dout * y).sum(axis=(0, 2, 3))


class _HeadGates:
    """Shared by both gated attention layers: the gate vector and the importance it collects.

    `gate` (H,) is a plain array, not a Parameter: it is never trained, and it stays out of
    state_dict. While `collect` is True, each backward adds sum_b |dL/dg_h| for every
    example b of the batch into `importance` (Michel et al.'s I_h, unnormalised).
    """

    def _init_gates(self, n_head, like):
        xp = get_xp(like)
        self.gate = xp.ones(n_head, dtype=like.dtype)
        self.importance = xp.zeros(n_head, dtype=like.dtype)
        self.collect = False

    def _gate_backward(self, dy_gated, y):
        """dy and, when collecting, the per-example |dL/dg_h|."""
        if self.collect:
            per_example = (dy_gated * y).sum(axis=(2, 3))                    # (B, H)
            self.importance += get_xp(y).abs(per_example).sum(axis=0)
        return dy_gated * self.gate[None, :, None, None]


def _keep_columns(linear, cols):
    """Shrink a Linear to the output columns `cols` (weight (in, out) -> (in, k), bias (k,))."""
    linear.weight.data = linear.weight.data[:, cols].copy()
    linear.weight.grad = get_xp(linear.weight.data).zeros_like(linear.weight.data)
    if linear.bias is not None:
        linear.bias.data = linear.bias.data[cols].copy()
        linear.bias.grad = get_xp(linear.bias.data).zeros_like(linear.bias.data)


def _keep_rows(linear, rows):
    """Shrink a Linear to the input rows `rows` (weight (in, out) -> (k, out); bias unchanged)."""
    linear.weight.data = linear.weight.data[rows].copy()
    linear.weight.grad = get_xp(linear.weight.data).zeros_like(linear.weight.data)


def _head_columns(xp, heads, D):
    """Column indices of the kept heads in a (.., H*D) projection."""
    cols = [h * D + d for h in heads for d in range(D)]
    return xp.asarray(cols, dtype=xp.int64)


class GatedCausalSelfAttention(_HeadGates, Module):
    """GPT-2's attention (`CausalSelfAttention`) with a gate on each head and a head count
    that can shrink. The Linear layers are the original ones (same parameter names)."""

    def __init__(self, attn):
        C = attn.c_attn.weight.shape[0]
        self.n_head = attn.n_head
        self.head_dim = C // attn.n_head                     # D stays fixed when heads go
        self.c_attn, self.c_proj, self.resid_dropout = attn.c_attn, attn.c_proj, attn.resid_dropout
        self.attn_pdrop, self.dropout_rng = attn.attn_pdrop, attn.dropout_rng
        self.training = attn.training
        self._init_gates(self.n_head, attn.c_attn.weight.data)
        self.cache = None

    def named_children(self):
        return [("c_attn", self.c_attn), ("c_proj", self.c_proj), ("resid_dropout", self.resid_dropout)]

    def forward(self, x, key_mask=None):                     # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        xp = get_xp(x)
        qkv = self.c_attn.forward(x)                                  # (B, T, 3 H D)
        q, k, v = qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4) # 3 x (B, H, T, D)
        mask = causal_mask(xp, T)
        if key_mask is not None:
            mask = mask & key_mask
        rng = self.dropout_rng() if (self.training and self.attn_pdrop > 0 and self.dropout_rng) else None
        y, attn_cache = attention_forward(q, k, v, mask, self.attn_pdrop, rng)   # (B, H, T, D)
        yg = y * self.gate[None, :, None, None]                       # gated heads
        self.cache = (attn_cache, y, (B, T))
        return self.resid_dropout.forward(self.c_proj.forward(merge_heads(yg)))

    def backward(self, dout):                                # (B, T, C) -> (B, T, C)
        attn_cache, y, (B, T) = self._check_cache()
        H, D = self.n_head, self.head_dim
        # undo: out = dropout(c_proj(merge(g * y)))
        dyg = self.c_proj.backward(self.resid_dropout.backward(dout))          # (B, T, H D)
        dyg = dyg.reshape(B, T, H, D).transpose(0, 2, 1, 3)                    # (B, H, T, D)
        # undo: yg = g * y
        dy = self._gate_backward(dyg, y)
        # undo: y = attention(q, k, v)
        dq, dk, dv = attention_backward(dy, attn_cache)
        # undo: q, k, v = split(c_attn(x))
        dqkv = get_xp(dout).stack((dq, dk, dv), axis=0)                        # (3, B, H, T, D)
        return self.c_attn.backward(dqkv.transpose(1, 3, 0, 2, 4).reshape(B, T, 3 * H * D))

    def forward_cached(self, x, past_k, past_v, pos):
        """Generation with a KV cache, as CausalSelfAttention.forward_cached (no backward).
        The model's buffers have the original H heads; only the first n_head are used."""
        B, t, C = x.shape
        H, D = self.n_head, self.head_dim
        xp = get_xp(x)
        q, k, v = self.c_attn.forward(x).reshape(B, t, 3, H, D).transpose(2, 0, 3, 1, 4)
        self.c_attn.cache = None
        past_k[:, :H, pos:pos + t] = k
        past_v[:, :H, pos:pos + t] = v
        S = pos + t
        y, _ = attention_forward(q, past_k[:, :H, :S], past_v[:, :H, :S], causal_mask(xp, t, S))
        out = self.c_proj.forward(merge_heads(y * self.gate[None, :, None, None]))
        self.c_proj.cache = None
        return out

    def prune(self, heads):
        """Remove the heads `heads` (indices among the current ones)."""
        xp = get_xp(self.gate)
        keep = [h for h in range(self.n_head) if h not in set(heads)]
        H, D = self.n_head, self.head_dim
        cols = _head_columns(xp, keep, D)                              # within each of q, k, v
        _keep_columns(self.c_attn, xp.concatenate([cols, cols + H * D, cols + 2 * H * D]))
        _keep_rows(self.c_proj, cols)
        self.gate, self.importance = self.gate[keep].copy(), self.importance[keep].copy()
        self.n_head = len(keep)
        return keep


class GatedBertSelfAttention(_HeadGates, Module):
    """BERT's self-attention (a `MultiHeadAttention` without W_o, which BERT keeps in
    `attention.output.dense`) with head gates; `out_proj` is that W_o Linear, shrunk with it."""

    def __init__(self, mha, out_proj):
        if mha.o is not None:
            raise TypeError("GatedBertSelfAttention expects BERT's attention, without its own W_o")
        self.names = mha.names
        self.q, self.k, self.v = mha.q, mha.k, mha.v
        self.n_head = mha.n_head
        self.head_dim = mha.q.weight.shape[0] // mha.n_head
        self.causal = mha.causal
        self.attn_pdrop, self.dropout_rng = mha.attn_pdrop, mha.dropout_rng
        self.training = mha.training
        self.out_proj = out_proj                             # owned by BertSelfOutput, not a child here
        self._init_gates(self.n_head, mha.q.weight.data)
        self.cache = None

    def named_children(self):
        return [(self.names[0], self.q), (self.names[1], self.k), (self.names[2], self.v)]

    def forward(self, x, kv=None, key_mask=None):            # (B, T, C) -> (B, T, H D)
        if kv is not None:
            raise NotImplementedError("head gates are written for self-attention")
        q = split_heads(self.q.forward(x), self.n_head)               # (B, H, T, D)
        k = split_heads(self.k.forward(x), self.n_head)
        v = split_heads(self.v.forward(x), self.n_head)
        rng = self.dropout_rng() if (self.training and self.attn_pdrop > 0 and self.dropout_rng) else None
        y, attn_cache = attention_forward(q, k, v, key_mask, self.attn_pdrop, rng)   # (B, H, T, D)
        self.cache = (attn_cache, y)
        return merge_heads(y * self.gate[None, :, None, None])        # (B, T, H D)

    def backward(self, dout):                                # (B, T, H D) -> (B, T, C)
        attn_cache, y = self._check_cache()
        # undo: out = merge(g * y)
        dy = self._gate_backward(split_heads(dout, self.n_head), y)
        # undo: y = attention(q, k, v)
        dq, dk, dv = attention_backward(dy, attn_cache)
        return (self.q.backward(merge_heads(dq)) + self.k.backward(merge_heads(dk))
                + self.v.backward(merge_heads(dv)))

    def prune(self, heads):
        xp = get_xp(self.gate)
        keep = [h for h in range(self.n_head) if h not in set(heads)]
        cols = _head_columns(xp, keep, self.head_dim)
        for lin in (self.q, self.k, self.v):
            _keep_columns(lin, cols)
        _keep_rows(self.out_proj, cols)
        self.gate, self.importance = self.gate[keep].copy(), self.importance[keep].copy()
        self.n_head = len(keep)
        return keep


# ----------------------------------------------------------------------------------------
# Head pruning on whole models
# ----------------------------------------------------------------------------------------

def add_head_gates(model):
    """Swap every block's attention for its gated version, in place (idempotent); returns
    the list of gated attention layers, one per block."""
    gated = []
    for block in block_list(model):
        if hasattr(block, "attn"):                                     # GPT block
            if isinstance(block.attn, CausalSelfAttention):
                block.attn = GatedCausalSelfAttention(block.attn)
            gated.append(block.attn)
        else:                                                          # BertLayer
            att = block.attention
            if isinstance(att.self_attention, MultiHeadAttention):
                att.self_attention = GatedBertSelfAttention(att.self_attention, att.output.dense)
            gated.append(att.self_attention)
    return gated


def head_importance(model, batches, normalize=True):
    """Michel et al.'s importance of every head: (L, H) host array.

    batches: an iterable of dicts for `model(**batch)` (with labels, so the model returns a
    loss). For each batch: forward, backward, and every head adds sum_b |dL/dg_h|. Parameter
    gradients computed on the way are cleared afterwards. normalize: divide each layer's
    scores by their L2 norm (the paper's per-layer normalisation).
    """
    gated = add_head_gates(model)
    for g in gated:
        g.importance[...] = 0
        g.collect = True
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            model(**batch)
            model.backward()
    finally:
        for g in gated:
            g.collect = False
        model.zero_grad()
        model.train(was_training)
    scores = [to_numpy(g.importance).copy() for g in gated]
    if normalize:
        scores = [s / max(float((s ** 2).sum()) ** 0.5, 1e-20) for s in scores]
    return scores


def heads_to_prune(scores, fraction):
    """The `fraction` of all heads with the lowest scores, as {layer: [head, ...]} (indices
    among each layer's current heads), always leaving each layer at least one head (its most
    important); so at most (heads - layers) heads go. Ties are broken by position."""
    _check_sparsity(fraction)
    flat = [(float(s), l, h) for l, layer in enumerate(scores) for h, s in enumerate(layer)]
    n = int(round(fraction * len(flat)))
    best = {l: int(max(range(len(layer)), key=lambda h: (layer[h], -h))) for l, layer in enumerate(scores)}
    out = {}
    for _, l, h in sorted(flat):
        if sum(len(v) for v in out.values()) == n:
            break
        if h != best[l]:
            out.setdefault(l, []).append(h)
    return {l: sorted(hs) for l, hs in out.items()}


def prune_heads(model, heads):
    """Remove heads {layer: [head indices]} physically: the q/k/v output columns and the
    output projection's input rows of those heads go. Every layer must keep one head.
    Returns {layer: heads kept (original ids)}."""
    gated = add_head_gates(model)
    kept = {}
    for layer, hs in heads.items():
        g = gated[layer]
        bad = [h for h in hs if not 0 <= h < g.n_head]
        if bad:
            raise ValueError(f"layer {layer} has heads 0..{g.n_head - 1}; cannot prune {bad}")
        if len(set(hs)) >= g.n_head:
            raise ValueError(f"pruning heads {sorted(hs)} would leave layer {layer} with no head; "
                             "keep at least one (or remove the whole layer)")
        kept[layer] = g.prune(hs)
    return kept


def mask_heads(model, heads):
    """Set the gates of {layer: [heads]} to 0: the same outputs as pruning them, without
    changing any shapes."""
    gated = add_head_gates(model)
    for layer, hs in heads.items():
        for h in hs:
            gated[layer].gate[h] = 0.0


def count_heads(model):
    return sum(g.n_head for g in add_head_gates(model))
