"""Looking inside a classifier: attention maps, attention rollout, and six ways to say which
input tokens a prediction rests on.

    from minilm.interpret import (attention_maps, attention_rollout, saliency,
                                  integrated_gradients, occlusion, lime, kernel_shap)
    maps = attention_maps(model, ids)                  # (L, B, H, T, T) NumPy, every layer and head
    roll = attention_rollout(maps)                     # (B, T, T): how much token j feeds token i
    a = integrated_gradients(model, ids, target=1, tokenizer=tok)
    a.values, a.score, a.baseline_score                # (T,) attributions, f(x), f(baseline)

Every attribution method explains one sequence and one number f(x): by default the logit of
class `target` (output="prob" explains its softmax probability instead). They work on any
minilm classifier called as `model(input_ids, attention_mask=..., token_type_ids=...)` that
returns `.logits` of shape (B, K) (sequence classification) or (B, T, K) (token classification;
pass `target_position`) and whose `backward(dlogits)` accepts their gradient: every BERT head,
a fine-tuned MiniLM, and any model that says where its word embeddings are (below).

Two families:
- gradient methods (saliency = gradient x input, integrated gradients) differentiate f with
  respect to the *word embeddings* x_t (the rows looked up from the table, before the position
  and segment embeddings are added). They use the model's public doors, as with transformers:
  `model(inputs_embeds=...)` takes the embeddings we choose (interpolated ones, for integrated
  gradients) and `model.backward(dlogits)` returns d f / d inputs_embeds. The model's parameter
  gradients are left exactly as they were.
- perturbation methods (occlusion, LIME, Kernel SHAP) only run forwards on edited inputs:
  a token is replaced by [MASK] (or [PAD], or any id) or dropped from the sequence.

Which positions are explained: the real tokens (attention_mask = 1) except the special ones
([CLS], [SEP], [PAD]; known from `tokenizer`, else only the config's pad id), or the indices you
pass as `positions`. Special tokens keep their value in every baseline and perturbation, and
positions not explained get attribution 0.

The model must take `inputs_embeds=` and `output_attentions=` (every minilm model does), and
say where its word embeddings are with `get_input_embeddings()` (an Embedding), as in
transformers.
"""
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ...backend import asarray, get_xp, to_numpy
from ...layers import MultiHeadAttention


# ---------------------------------------------------------------------------------------------
# Attention maps and rollout
# ---------------------------------------------------------------------------------------------

def attention_layers(model):
    """Every attention module of `model`, in forward order (BERT: one per encoder layer)."""
    return [m for m in model.modules() if isinstance(m, MultiHeadAttention)]


def attention_maps(model, input_ids, attention_mask=None, token_type_ids=None):
    """Attention probabilities of every layer and head after one eval-mode forward.

    input_ids: (B, T) (or (T,)) -> NumPy (L, B, H, T, S): entry [l, b, h, i, j] is how much
    query i attends to key j in head h of layer l (rows sum to 1; padded keys get 0).
    They are the model's `out.attentions` (output_attentions=True, as in transformers).
    """
    ids, mask, tt = _batch_inputs(input_ids, attention_mask, token_type_ids)
    was = model.training
    model.eval()
    try:
        out = _forward(model, ids, mask, tt, output_attentions=True)
        if not out.attentions:
            raise TypeError(f"{type(model).__name__} returned no attentions")
        return np.stack([to_numpy(a).copy() for a in out.attentions])   # (L, B, H, T, S)
    finally:
        model.clear_caches()
        model.train(was)


def attention_rollout(maps, residual=0.5, head_fusion="mean"):
    """Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each
    position through all the layers, treating attention as the only mixing.

    maps: (L, B, H, T, T) from `attention_maps` -> (B, T, T) NumPy; row i of the result is
    the share of position i's representation at the top that comes from each input token.
        A_l   = mean over heads of layer l's attention            (or max, with head_fusion="max")
        Ahat_l = residual * I + (1 - residual) * A_l, rows renormalised to sum to 1
                 (the identity stands for the skip connection around attention)
        R     = Ahat_L @ ... @ Ahat_2 @ Ahat_1
    For a BERT classifier, R[:, 0] (the [CLS] row) is the usual token relevance.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 5 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"maps must be (L, B, H, T, T) self-attention, got shape {maps.shape}")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    if head_fusion == "mean":
        A = maps.mean(axis=2)                                        # (L, B, T, T)
    elif head_fusion == "max":
        A = maps.max(axis=2)
    else:
        raise ValueError(f"head_fusion must be 'mean' or 'max', got {head_fusion!r}")
    T = A.shape[-1]
    Ahat = residual * np.eye(T) + (1.0 - residual) * A               # (L, B, T, T)
    Ahat = Ahat / Ahat.sum(axis=-1, keepdims=True)                   # row-normalise
    R = Ahat[0]
    for layer in Ahat[1:]:
        R = layer @ R                                                # (B, T, T)
    return R


def plot_attention_maps(maps, tokens=None, batch_index=0, layers=None, heads=None, path=None,
                        title=None):
    """A grid of heatmaps, one row per layer and one column per head (plus the head mean).
    maps: (L, B, H, T, S) from `attention_maps`. Returns the Figure (saved when `path`)."""
    from ...viz import pyplot
    plt = pyplot()
    maps = np.asarray(maps)
    L, _, H = maps.shape[:3]
    layers = list(range(L)) if layers is None else list(layers)
    heads = list(range(H)) if heads is None else list(heads)
    cols = len(heads) + 1
    fig, axes = plt.subplots(len(layers), cols, figsize=(2.1 * cols, 2.1 * len(layers)), dpi=110,
                             squeeze=False)
    for r, l in enumerate(layers):
        for c in range(cols):
            ax = axes[r, c]
            w = maps[l, batch_index, heads[c]] if c < len(heads) else maps[l, batch_index].mean(axis=0)
            ax.imshow(w, cmap="viridis", vmin=0, vmax=max(float(w.max()), 1e-9))
            ax.set_xticks([])
            ax.set_yticks([])
            if tokens is not None and c == 0:
                ax.set_yticks(range(len(tokens)), tokens, fontsize=5)
            if tokens is not None and r == len(layers) - 1:
                ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=5)
            if r == 0:
                ax.set_title(f"head {heads[c]}" if c < len(heads) else "mean", fontsize=8)
        axes[r, 0].set_ylabel(f"layer {l}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
        plt.close(fig)
    return fig


def plot_attributions(tokens, values, path=None, title=None, ax=None):
    """Horizontal bar chart of per-token attributions (red: for the class, blue: against)."""
    from ...viz import pyplot
    plt = pyplot()
    values = np.asarray(values, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 0.25 * len(values) + 1), dpi=110)
    y = np.arange(len(values))[::-1]
    ax.barh(y, values, color=["tab:red" if v > 0 else "tab:blue" for v in values])
    ax.set_yticks(y, tokens, fontsize=7)
    ax.axvline(0, color="k", lw=0.5)
    if title:
        ax.set_title(title, fontsize=9)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path)
        plt.close(ax.figure)
    return ax


# ---------------------------------------------------------------------------------------------
# The plumbing: inputs, the score f(x), the word embeddings
# ---------------------------------------------------------------------------------------------

@dataclass
class Attribution:
    """One explanation of f(x) for one sequence.

    values: (T,) NumPy, one number per position (0 where not explained); positions: the
    explained indices; score: f(x); baseline_score: f at the method's reference input (None
    where the method has none); extra: method-specific details (intercept, delta, ...)."""
    method: str
    values: np.ndarray
    positions: list
    score: float
    baseline_score: float = None
    extra: dict = field(default_factory=dict)

    @property
    def total(self):
        return float(self.values.sum())


def _batch_inputs(input_ids, attention_mask, token_type_ids):
    """Host int64 arrays (B, T); a 1-D input becomes a batch of one."""
    ids = np.asarray(to_numpy(input_ids) if not isinstance(input_ids, list) else input_ids, dtype=np.int64)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"input_ids must be (T,) or (B, T) with T > 0, got shape {ids.shape}")
    as_ids = lambda a: None if a is None else np.asarray(to_numpy(a), dtype=np.int64).reshape(ids.shape)
    return ids, as_ids(attention_mask), as_ids(token_type_ids)


def _forward(model, ids, mask, tt, **kwargs):
    """model(ids or inputs_embeds=..., attention_mask, token_type_ids, **kwargs)."""
    if mask is not None:
        kwargs["attention_mask"] = mask
    if tt is not None:
        kwargs["token_type_ids"] = tt
    return model(ids, **kwargs) if ids is not None else model(**kwargs)


def _call(model, ids, mask, tt, inputs_embeds=None):
    if inputs_embeds is not None:
        out = _forward(model, None, mask, tt, inputs_embeds=inputs_embeds)
    else:
        out = _forward(model, ids, mask, tt)
    if not hasattr(out, "logits"):
        raise TypeError(f"{type(model).__name__} returns no .logits: the attribution methods explain "
                        "a classifier's logits (use a BertFor...Classification head)")
    return out.logits


def _input_embeddings(model):
    """The word-embedding layer: `model.get_input_embeddings()`, as in transformers."""
    if not hasattr(model, "get_input_embeddings"):
        raise TypeError(f"cannot find the word embeddings of {type(model).__name__}: define "
                        "get_input_embeddings() -> the Embedding layer on the model")
    return model.get_input_embeddings()


class _Explainer:
    """One sequence, one score f: forwards on edited ids, gradients w.r.t. word embeddings."""

    def __init__(self, model, input_ids, target, attention_mask=None, token_type_ids=None,
                 tokenizer=None, target_position=None, output="logit", positions=None,
                 special_ids=None, batch_size=64):
        ids, mask, tt = _batch_inputs(input_ids, attention_mask, token_type_ids)
        if ids.shape[0] != 1:
            raise ValueError(f"explain one sequence at a time: input_ids has {ids.shape[0]} rows")
        if output not in ("logit", "prob", "logprob"):
            raise ValueError(f"output must be 'logit', 'prob' or 'logprob', got {output!r}")
        self.model, self.tokenizer = model, tokenizer
        self.ids = ids[0]                                   # (T,)
        self.T = T = len(self.ids)
        self.mask = np.ones(T, np.int64) if mask is None else mask[0]
        self.tt = None if tt is None else tt[0]
        self.output, self.batch_size = output, int(batch_size)
        self.pad_id = _pad_id(model, tokenizer)
        if special_ids is None:
            special_ids = set()
            if tokenizer is not None:
                special_ids = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
            if self.pad_id is not None:
                special_ids.add(self.pad_id)
        self.special_ids = set(int(s) for s in special_ids)
        if target_position is not None:
            target_position = int(target_position)
            if not 0 <= target_position < T:
                raise ValueError(f"target_position {target_position} is outside the sequence [0, {T})")
        self.target_position = target_position
        if positions is None:
            positions = [t for t in range(T) if self.mask[t] and int(self.ids[t]) not in self.special_ids]
        else:
            positions = [int(p) for p in np.atleast_1d(positions)]
            bad = [p for p in positions if not 0 <= p < T]
            if bad:
                raise ValueError(f"token index {bad[0]} is outside the sequence: valid indices are "
                                 f"0 .. {T - 1} (T = {T})")
            if len(set(positions)) != len(positions):
                raise ValueError(f"positions has repeats: {positions}")
        if not positions:
            raise ValueError("no token to explain: every position is special or padding")
        self.positions = positions
        self.target = int(target)
        was = model.training
        try:
            model.eval()
            K = self._logits_of(self.ids[None], self.mask[None]).shape[-1]
        finally:
            model.clear_caches()
            model.train(was)
        if not 0 <= self.target < K:
            raise ValueError(f"target class {self.target} is outside [0, {K})")

    # -- forwards -------------------------------------------------------------------------
    def _logits_of(self, ids, mask, inputs_embeds=None):
        tt = None if self.tt is None else np.broadcast_to(self.tt, ids.shape)
        return _call(self.model, ids, mask, tt, inputs_embeds)

    def _select(self, logits):
        """(n, K) logits of the explained position."""
        if logits.ndim == 3:
            if self.target_position is None:
                raise ValueError("the model returns one prediction per token (B, T, K): pass "
                                 "target_position, the token whose prediction to explain")
            return logits[:, self.target_position]
        return logits

    def _score(self, z):
        """f and df/dz from (n, K) logits (backend arrays) -> NumPy (n,), backend (n, K)."""
        xp = get_xp(z)
        z = z.astype(xp.float64) if z.dtype != xp.float64 else z
        n, K = z.shape
        onehot = xp.zeros((n, K), dtype=z.dtype)
        onehot[:, self.target] = 1.0
        if self.output == "logit":
            return to_numpy(z[:, self.target]), onehot
        p = xp.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)                                  # (n, K) softmax
        if self.output == "prob":                                          # d p_t / d z = p_t (e_t - p)
            return to_numpy(p[:, self.target]), p[:, self.target:self.target + 1] * (onehot - p)
        logp = z[:, self.target] - z.max(axis=1) - xp.log(xp.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1))
        return to_numpy(logp), onehot - p                                  # d log p_t / d z = e_t - p

    def scores(self, ids, mask):
        """f on a batch of edited sequences (n, T') -> NumPy (n,), in chunks, eval mode."""
        was = self.model.training
        self.model.eval()
        try:
            out = []
            for i in range(0, len(ids), self.batch_size):
                out.append(self._score(self._select(self._logits_of(ids[i:i + self.batch_size],
                                                                     mask[i:i + self.batch_size])))[0])
            self.model.clear_caches()
            return np.concatenate(out)
        finally:
            self.model.train(was)

    # -- gradients w.r.t. the word embeddings ---------------------------------------------
    def word_embeddings(self, ids=None):
        """The rows x_t = E[ids_t] the model looks up, as a NumPy float64 (T, C) array."""
        E = _input_embeddings(self.model).weight.data
        return to_numpy(E[asarray(self.ids if ids is None else ids)]).astype(np.float64)

    def grads(self, embeds):
        """embeds: (n, T, C) NumPy -> (f (n,), df/dembeds (n, T, C)) NumPy float64, chunked."""
        model = self.model
        E = _input_embeddings(model).weight.data
        params = model.parameters()
        # parameter gradients (and per-example ones, where a caller switched them on) are left
        # as they were: this backward is for the inputs only
        saved = [(p.grad, p.__dict__.get("grad_sample")) for p in params]
        was = model.training
        fs, gs = [], []
        try:
            model.eval()
            xp = get_xp(E)
            for p in params:
                p.grad = xp.zeros_like(p.data)
                if "grad_sample" in p.__dict__:
                    p.grad_sample = 0
            for i in range(0, len(embeds), self.batch_size):
                e = embeds[i:i + self.batch_size]
                n = len(e)
                ids = np.broadcast_to(self.ids, (n, self.T))
                logits = self._logits_of(ids, np.broadcast_to(self.mask, (n, self.T)),
                                         inputs_embeds=asarray(e).astype(E.dtype))
                f, dz = self._score(self._select(logits))
                dlogits = xp.zeros(logits.shape, dtype=logits.dtype)
                if logits.ndim == 3:
                    dlogits[:, self.target_position] = dz
                else:
                    dlogits[...] = dz
                dembeds = model.backward(dlogits)               # d f / d inputs_embeds (n, T, C)
                fs.append(f)
                gs.append(to_numpy(dembeds).astype(np.float64))
        finally:
            for p, (g, gsample) in zip(params, saved):
                p.grad = g
                if gsample is not None:
                    p.grad_sample = gsample
            model.clear_caches()
            model.train(was)
        return np.concatenate(fs), np.concatenate(gs)

    # -- perturbations --------------------------------------------------------------------
    def perturbed(self, keep, replace_with):
        """keep: (n, d) bool over self.positions -> (ids, mask) batches where the features not
        kept are replaced by a token id, or dropped (sequences then padded on the right)."""
        keep = np.asarray(keep, dtype=bool)
        n = len(keep)
        full = np.ones((n, self.T), dtype=bool)
        full[:, self.positions] = keep
        if replace_with == "drop":
            lengths = full.sum(axis=1)
            Tm = int(lengths.max())
            pad = self.pad_id if self.pad_id is not None else 0
            ids = np.full((n, Tm), pad, np.int64)
            mask = np.zeros((n, Tm), np.int64)
            for r in range(n):
                kept = np.flatnonzero(full[r])
                ids[r, :len(kept)] = self.ids[kept]
                mask[r, :len(kept)] = self.mask[kept]
            if self.tt is not None:
                raise ValueError("replace_with='drop' does not support token_type_ids; use a token id")
            return ids, mask
        tok = self.replacement_id(replace_with)
        ids = np.where(full, self.ids[None], tok)
        return ids, np.broadcast_to(self.mask, ids.shape).copy()

    def replacement_id(self, replace_with):
        if isinstance(replace_with, (int, np.integer)):
            return int(replace_with)
        if replace_with == "mask":
            if self.tokenizer is None or getattr(self.tokenizer, "mask_token_id", None) is None:
                raise ValueError("replace_with='mask' needs the tokenizer (for the [MASK] id); "
                                 "pass tokenizer=..., an integer token id, 'pad' or 'drop'")
            return int(self.tokenizer.mask_token_id)
        if replace_with == "pad":
            if self.pad_id is None:
                raise ValueError("the model has no pad_token_id: pass an integer token id")
            return int(self.pad_id)
        raise ValueError(f"replace_with must be 'mask', 'pad', 'drop' or a token id, got {replace_with!r}")

    def values_at(self, phi):
        v = np.zeros(self.T)
        v[self.positions] = phi
        return v


def _pad_id(model, tokenizer):
    if tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    cfg = getattr(model, "config", None)
    pid = getattr(cfg, "pad_token_id", None)
    return None if pid is None else int(pid)


def _default_replacement(tokenizer):
    return "mask" if tokenizer is not None and getattr(tokenizer, "mask_token_id", None) is not None else "pad"


_COMMON = """
    model: a minilm classifier (see the module docstring); input_ids: (T,) or (1, T);
    target: the class whose score f(x) is explained (logit by default; output="prob" or
    "logprob" for the softmax probability or its log); attention_mask / token_type_ids: as for
    the model; tokenizer: gives the special ids and [MASK] (optional); target_position: for
    token classifiers, the token whose prediction is explained; positions: the token indices to
    explain (default: every real, non-special token; an index outside the sequence raises
    ValueError); batch_size: rows per forward."""


# ---------------------------------------------------------------------------------------------
# Gradient methods
# ---------------------------------------------------------------------------------------------

def saliency(model, input_ids, target, attention_mask=None, token_type_ids=None, tokenizer=None,
             target_position=None, output="logit", positions=None, batch_size=64):
    """Gradient x input (Shrikumar et al. 2016; Denil et al. 2014) on the word embeddings:

        attribution_t = sum_c x_tc * df/dx_tc           (the first-order Taylor term of f at x)
    `extra["grad_norm"]` holds ||df/dx_t||, the plain gradient saliency (Simonyan et al. 2013).
    """ + _COMMON
    ex = _Explainer(model, input_ids, target, attention_mask, token_type_ids, tokenizer,
                    target_position, output, positions, batch_size=batch_size)
    x = ex.word_embeddings()                                   # (T, C)
    f, g = ex.grads(x[None])                                   # (1,), (1, T, C)
    gx = (x * g[0]).sum(axis=-1)                               # (T,)
    norm = np.sqrt((g[0] ** 2).sum(axis=-1))
    return Attribution("saliency", ex.values_at(gx[ex.positions]), ex.positions, float(f[0]),
                       extra={"grad_norm": ex.values_at(norm[ex.positions])})


def _quadrature(steps, method):
    """Points alpha_k in [0, 1] and weights w_k with sum_k w_k g(alpha_k) ~ integral_0^1 g."""
    m = int(steps)
    if m < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method == "trapezoid":
        a = np.linspace(0.0, 1.0, m + 1)
        w = np.full(m + 1, 1.0 / m)
        w[0] = w[-1] = 0.5 / m
    elif method == "riemann_left":
        a, w = np.arange(m) / m, np.full(m, 1.0 / m)
    elif method == "riemann_right":
        a, w = np.arange(1, m + 1) / m, np.full(m, 1.0 / m)
    elif method == "riemann_middle":
        a, w = (np.arange(m) + 0.5) / m, np.full(m, 1.0 / m)
    else:
        raise ValueError(f"method must be 'trapezoid', 'riemann_left', 'riemann_right' or "
                         f"'riemann_middle', got {method!r}")
    return a, w


def integrated_gradients(model, input_ids, target, attention_mask=None, token_type_ids=None,
                         tokenizer=None, target_position=None, output="logit", positions=None,
                         baseline="pad", steps=50, method="trapezoid", batch_size=64):
    """Integrated gradients (Sundararajan, Taly & Yan, 2017) on the word embeddings:

        IG_t = sum_c (x_tc - x'_tc) * integral_0^1 df/dx_tc (x' + alpha (x - x')) d alpha
    approximated by a quadrature with `steps` intervals (trapezoid by default; also
    "riemann_left", "riemann_right", "riemann_middle"), all the alpha points of a chunk run as
    one batch. Completeness: sum_t IG_t = f(x) - f(x') up to the quadrature error, which
    `extra["delta"]` reports (raise `steps` if it is large).

    baseline x': "pad" (the [PAD] embedding, the usual choice for text), "zero", "mask" (the
    [MASK] embedding), or a (T, C) array. Only the explained positions move; the others
    ([CLS], [SEP], ...) keep their embedding in x'.
    """ + _COMMON
    ex = _Explainer(model, input_ids, target, attention_mask, token_type_ids, tokenizer,
                    target_position, output, positions, batch_size=batch_size)
    x = ex.word_embeddings()                                   # (T, C)
    if isinstance(baseline, str):
        if baseline == "zero":
            row = np.zeros(x.shape[1])
        elif baseline in ("pad", "mask"):
            row = ex.word_embeddings(np.asarray([ex.replacement_id(baseline)]))[0]
        else:
            raise ValueError(f"baseline must be 'pad', 'zero', 'mask' or a (T, C) array, got {baseline!r}")
        x0 = x.copy()
        x0[ex.positions] = row
    else:
        x0 = np.asarray(to_numpy(baseline), dtype=np.float64)
        if x0.shape != x.shape:
            raise ValueError(f"baseline array must have shape {x.shape}, got {x0.shape}")
        x0 = np.where(np.isin(np.arange(ex.T), ex.positions)[:, None], x0, x)
    alphas, weights = _quadrature(steps, method)
    path = x0[None] + alphas[:, None, None] * (x - x0)[None]   # (m, T, C) points on the straight line
    f_path, g = ex.grads(path)                                 # (m,), (m, T, C)
    avg_grad = np.tensordot(weights, g, axes=1)                # (T, C)
    ig = ((x - x0) * avg_grad).sum(axis=-1)                    # (T,)
    f_x, f_0 = ex.grads(np.stack([x, x0]))[0] if method != "trapezoid" else (f_path[-1], f_path[0])
    values = ex.values_at(ig[ex.positions])
    delta = float(values.sum() - (f_x - f_0))
    return Attribution("integrated_gradients", values, ex.positions, float(f_x), float(f_0),
                       extra={"delta": delta, "steps": int(steps), "method": method})


# ---------------------------------------------------------------------------------------------
# Perturbation methods
# ---------------------------------------------------------------------------------------------

def occlusion(model, input_ids, target, attention_mask=None, token_type_ids=None, tokenizer=None,
              target_position=None, output="logit", positions=None, replace_with=None, batch_size=64):
    """Occlusion (Zeiler & Fergus, 2014; leave-one-out for text): hide one token at a time.

        attribution_t = f(x) - f(x with token t replaced by [MASK] / [PAD] / an id, or dropped)
    replace_with: "mask" (default when a tokenizer is given), "pad" (default otherwise),
    "drop", or a token id.
    """ + _COMMON
    ex = _Explainer(model, input_ids, target, attention_mask, token_type_ids, tokenizer,
                    target_position, output, positions, batch_size=batch_size)
    replace_with = _default_replacement(tokenizer) if replace_with is None else replace_with
    d = len(ex.positions)
    keep = np.vstack([np.ones((1, d), bool), ~np.eye(d, dtype=bool)])   # row 0: x itself
    f = ex.scores(*ex.perturbed(keep, replace_with))
    return Attribution("occlusion", ex.values_at(f[0] - f[1:]), ex.positions, float(f[0]),
                       extra={"replace_with": replace_with})


def weighted_ridge(Z, y, w, alpha=1.0):
    """argmin_{b, beta} sum_i w_i (y_i - b - z_i . beta)^2 + alpha ||beta||^2 (intercept b not
    penalised, as scikit-learn's Ridge): centre Z and y with the weighted means, then
        beta = (Zc^T W Zc + alpha I)^-1 Zc^T W yc,      b = ybar - zbar . beta
    Returns (beta, b)."""
    Z, y, w = np.asarray(Z, float), np.asarray(y, float), np.asarray(w, float)
    zbar = w @ Z / w.sum()                                     # (d,)
    ybar = w @ y / w.sum()
    Zc, yc = Z - zbar, y - ybar
    A = Zc.T @ (w[:, None] * Zc) + alpha * np.eye(Z.shape[1])  # (d, d)
    beta = np.linalg.solve(A, Zc.T @ (w * yc))
    return beta, float(ybar - zbar @ beta)


def lime(model, input_ids, target, attention_mask=None, token_type_ids=None, tokenizer=None,
         target_position=None, output="prob", positions=None, replace_with=None, n_samples=500,
         kernel_width=0.25, alpha=1.0, seed=0, batch_size=64):
    """LIME (Ribeiro, Singh & Guestrin, 2016) for text: a weighted linear model of f around x.

    1. Draw `n_samples` binary masks z over the d explained tokens: the first is all ones (x
       itself); for the others the number of hidden tokens is uniform in 1..d and which ones is
       uniform (LimeTextExplainer's scheme). Hidden tokens are replaced (or dropped).
    2. Weight each sample by an exponential kernel on its cosine distance to x:
           D(z) = 1 - cos(z, 1) = 1 - sqrt(|z| / d),   pi(z) = sqrt(exp(-D^2 / width^2))
       (LIME computes D in percent with width 25; width 0.25 on the unit scale is the same).
    3. Fit f(z) ~ b + z . beta by weighted ridge regression (alpha = 1, intercept unpenalised).
    The attributions are beta; extra holds the intercept, the weighted R^2 and the samples.
    output defaults to "prob", as LIME explains predicted probabilities.
    """ + _COMMON
    ex = _Explainer(model, input_ids, target, attention_mask, token_type_ids, tokenizer,
                    target_position, output, positions, batch_size=batch_size)
    replace_with = _default_replacement(tokenizer) if replace_with is None else replace_with
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}")
    if kernel_width <= 0:
        raise ValueError(f"kernel_width must be > 0, got {kernel_width}")
    rng = np.random.default_rng(seed)
    d = len(ex.positions)
    Z = np.ones((n_samples, d), dtype=bool)
    n_hidden = rng.integers(1, d + 1, size=n_samples - 1)
    for r, k in enumerate(n_hidden, start=1):
        Z[r, rng.choice(d, size=k, replace=False)] = False
    f = ex.scores(*ex.perturbed(Z, replace_with))
    D = 1.0 - np.sqrt(Z.sum(axis=1) / d)                       # cosine distance to the all-ones mask
    w = np.sqrt(np.exp(-(D ** 2) / kernel_width ** 2))
    beta, b = weighted_ridge(Z.astype(float), f, w, alpha)
    pred = b + Z @ beta
    ybar = w @ f / w.sum()
    r2 = 1.0 - (w @ (f - pred) ** 2) / max(float(w @ (f - ybar) ** 2), 1e-300)
    return Attribution("lime", ex.values_at(beta), ex.positions, float(f[0]),
                       extra={"intercept": b, "r2": float(r2), "masks": Z, "f": f, "weights": w})


def shapley_kernel_weight(d, s):
    """Kernel SHAP's weight of a coalition of size s out of d players (0 < s < d):
        pi(s) = (d - 1) / (C(d, s) s (d - s))        (Lundberg & Lee, 2017, Theorem 2)"""
    return (d - 1) / (math.comb(d, s) * s * (d - s))


def coalition_values(model, input_ids, target, attention_mask=None, token_type_ids=None,
                     tokenizer=None, target_position=None, output="logit", positions=None,
                     replace_with=None, batch_size=64):
    """The cooperative game behind Kernel SHAP: v(S) = f(x with the explained tokens outside S
    replaced / dropped). Returns (v, positions, T), v a callable (n, d) bool masks -> (n,) NumPy."""
    ex = _Explainer(model, input_ids, target, attention_mask, token_type_ids, tokenizer,
                    target_position, output, positions, batch_size=batch_size)
    replace_with = _default_replacement(tokenizer) if replace_with is None else replace_with
    ex.replacement_id(replace_with) if replace_with != "drop" else None     # fail early on a bad choice
    return (lambda masks: ex.scores(*ex.perturbed(masks, replace_with))), ex.positions, ex.T


def shapley_values(value_fn, d):
    """Exact Shapley values by brute force over all 2^d coalitions (a reference for d <= ~12):

        phi_i = sum_{S subset of N \\ {i}} |S|! (d - |S| - 1)! / d! * (v(S + i) - v(S))
    value_fn: (n, d) bool masks -> (n,) values."""
    masks = np.array(list(itertools.product([False, True], repeat=d)), dtype=bool)   # (2^d, d)
    v = np.asarray(value_fn(masks), dtype=float)
    index = {m.tobytes(): k for k, m in enumerate(masks)}
    phi = np.zeros(d)
    for k, m in enumerate(masks):
        s = int(m.sum())
        for i in np.flatnonzero(~m):
            with_i = m.copy()
            with_i[i] = True
            phi[i] += (math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
                       * (v[index[with_i.tobytes()]] - v[k]))
    return phi


def _constrained_wls(Z, y, w, v0, v1):
    """Kernel SHAP's regression: minimise sum_k w_k (y_k - v0 - z_k . phi)^2 subject to
    sum_i phi_i = v1 - v0 (efficiency; the empty and full coalitions have infinite weight, so
    they become the intercept v0 and this constraint). Eliminating phi_d = (v1 - v0) - sum_{i<d} phi_i:
        y_k - v0 - z_kd (v1 - v0) = sum_{i<d} (z_ki - z_kd) phi_i
    then ordinary weighted least squares for phi_1..phi_{d-1}."""
    Z = Z.astype(float)
    d = Z.shape[1]
    total = v1 - v0
    if d == 1:
        return np.array([total])
    yt = y - v0 - Z[:, -1] * total                             # (n,)
    X = Z[:, :-1] - Z[:, -1:]                                  # (n, d-1)
    sw = np.sqrt(w)
    head, *_ = np.linalg.lstsq(X * sw[:, None], yt * sw, rcond=None)
    return np.append(head, total - head.sum())


def kernel_shap(model, input_ids, target, attention_mask=None, token_type_ids=None, tokenizer=None,
                target_position=None, output="logit", positions=None, replace_with=None,
                n_samples=2048, seed=0, exact=None, batch_size=64):
    """Kernel SHAP (Lundberg & Lee, 2017) over tokens: Shapley values of the game
    v(S) = f(x with the tokens outside S hidden) by a weighted linear regression.

    With d explained tokens and 2^d - 2 <= n_samples, every coalition is enumerated with its
    exact Shapley-kernel weight `shapley_kernel_weight(d, |S|)`, and the regression returns the
    exact Shapley values. Otherwise `n_samples` coalitions are sampled: a size s with
    probability proportional to the kernel's total mass at s, (d - 1) / (s (d - s)), then a
    uniform subset of that size, each with its complement (paired sampling); sampled from the
    kernel, they get equal weights. Both ways the efficiency constraint
    sum_t phi_t = v(all) - v(none) holds exactly. extra["exact"] says which way ran;
    exact=True / False forces one way (None: enumerate when 2^d - 2 <= n_samples).
    """ + _COMMON
    value_fn, pos, T = coalition_values(model, input_ids, target, attention_mask, token_type_ids,
                                     tokenizer, target_position, output, positions, replace_with,
                                     batch_size)
    d = len(pos)
    ends = value_fn(np.array([np.zeros(d, bool), np.ones(d, bool)]))
    v0, v1 = float(ends[0]), float(ends[1])
    if exact is None:
        exact = (2 ** d - 2) <= n_samples
    exact = exact or d <= 1
    if d <= 1:
        phi = np.array([v1 - v0])[:d]
    elif exact:
        Z = np.array([m for m in itertools.product([False, True], repeat=d) if 0 < sum(m) < d], dtype=bool)
        w = np.array([shapley_kernel_weight(d, int(m.sum())) for m in Z])
        phi = _constrained_wls(Z, value_fn(Z), w, v0, v1)
    else:
        rng = np.random.default_rng(seed)
        sizes = np.arange(1, d)
        mass = (d - 1) / (sizes * (d - sizes))
        half = max(1, n_samples // 2)
        draw = rng.choice(sizes, size=half, p=mass / mass.sum())
        Z = np.zeros((2 * half, d), dtype=bool)
        for r, s in enumerate(draw):
            Z[2 * r, rng.choice(d, size=s, replace=False)] = True
            Z[2 * r + 1] = ~Z[2 * r]                            # paired: the complement too
        phi = _constrained_wls(Z, value_fn(Z), np.ones(len(Z)), v0, v1)
    values = np.zeros(T)
    values[pos] = phi
    return Attribution("kernel_shap", values, pos, v1, v0, extra={"exact": bool(exact)})


METHODS = {"saliency": saliency, "integrated_gradients": integrated_gradients,
           "occlusion": occlusion, "lime": lime, "kernel_shap": kernel_shap}


def explain(model, input_ids, target, methods=("saliency", "integrated_gradients", "occlusion",
                                                 "lime", "kernel_shap"), **kwargs):
    """{method name: Attribution} for several methods on the same input (shared kwargs; a
    method ignores those it does not take)."""
    import inspect
    out = {}
    for name in methods:
        fn = METHODS[name]
        accepted = inspect.signature(fn).parameters
        out[name] = fn(model, input_ids, target, **{k: v for k, v in kwargs.items() if k in accepted})
    return out
