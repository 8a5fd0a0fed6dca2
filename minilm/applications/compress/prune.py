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
from ...backend import get_xp, to_numpy
from ...layers import Linear, Module, MultiHeadAttention
from ...ops import linear_backward, linear_forward
from .modules import named_modules, replace_module, selector


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
        # a mask given on the host (or as a list) moves to the weight's backend
        self.mask = xp.ones_like(self.weight.data) if mask is None else xp.asarray(mask, dtype=self.weight.data.dtype)
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
    heads are left dense), or name fragments (see `modules.selector`).
    Returns {layer name: sparsity reached}.
    """
    _check_sparsity(sparsity)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    pick = selector(model, targets)
    chosen = [(n, m, p) for n, m, p in named_modules(model)
              if isinstance(m, (Linear, MaskedLinear)) and p is not None and pick(n, m)]
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
    pick = selector(model, targets)
    for name, m, parent in named_modules(model):
        if isinstance(m, (Linear, MaskedLinear)) and parent is not None and pick(name, m):
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


# ----------------------------------------------------------------------------------------
# The gated attention layers: minilm's one attention layer with its gates switched on
# ----------------------------------------------------------------------------------------
# `MultiHeadAttention.enable_head_gates()` multiplies each head's output by g_h (head_gate_forward
# above, written inline), collects sum_b |dL/dg_h| while `collect` is True, and
# `prune_heads` cuts the heads' columns and rows. These two names are kept for code that
# built the gated layers explicitly; they return the layer they are given, gates on.

def GatedCausalSelfAttention(attn):                          # noqa: N802 (formerly a class)
    """GPT-2's attention with a gate on each head (the same layer, gates switched on)."""
    return attn.enable_head_gates()


def GatedBertSelfAttention(mha, out_proj=None):              # noqa: N802 (formerly a class)
    """BERT's self-attention with a gate on each head (the same layer, gates switched on);
    its W_o lives in `attention.output.dense` and shrinks with it (`model.prune_heads`)."""
    return mha.enable_head_gates()


# ----------------------------------------------------------------------------------------
# Head pruning on whole models
# ----------------------------------------------------------------------------------------

def add_head_gates(model):
    """Switch on the gates of every self-attention layer, in forward order (idempotent);
    returns those layers, one per block for GPT and BERT."""
    return [m.enable_head_gates() for m in model.modules() if isinstance(m, MultiHeadAttention)]


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
    for layer, hs in heads.items():
        kept[layer] = [h for h in range(gated[layer].n_head) if h not in set(hs)]
    model.prune_heads(heads)                     # the model knows where each layer's W_o lives
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
