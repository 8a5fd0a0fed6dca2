"""BERT (Devlin et al., 2018) as Hugging Face `transformers` computes it, backward by hand.

    x = LayerNorm(word[ids] + position[t] + token_type[tt])         (B, T, C)   embeddings
    for each of the L layers (post-LN: the LayerNorm comes *after* each residual add):
        a = LayerNorm(x + dropout(attention(x) W_o + b_o))              attention.{self, output}
        x = LayerNorm(a + dropout(gelu(a W_1 + b_1) W_2 + b_2))         intermediate, output
    pooled = tanh(x[:, 0] W_p + b_p)                                 (B, C)      pooler, on [CLS]

GPT-2 normalises *before* each sub-layer (pre-LN) and ends with a final LayerNorm; BERT
normalises *after* each residual add, so every layer's output is already normalised. And BERT
attends in both directions: there is no causal mask, only the padding mask.

The heads own `bert` (a BertModel) plus a few layers of their own:
    BertForPreTraining             cls.predictions (masked LM; decoder tied to word_embeddings)
                                   + cls.seq_relationship (next-sentence prediction, on pooled)
    BertForMaskedLM                cls.predictions
    BertForSequenceClassification  classifier on dropout(pooled)            -> (B, K)
    BertForTokenClassification     classifier on dropout(x), one label a token (NER) -> (B, T, K)
    BertForQuestionAnswering       qa_outputs on x -> start / end logits over the positions

Labels follow transformers: -100 marks a position (or example) that does not count. When every
label of a batch is -100 the loss is 0.0 and every gradient is zero (PyTorch's mean over no
terms gives NaN). A (B, 1) `labels` / `next_sentence_label` is read as (B,), as transformers
flattens it.

Parameter names are transformers' (`bert.encoder.layer.0.attention.self.query.weight`, ...), so
checkpoints map one to one. The layout differs in one place: minilm's Linear keeps W as
(in, out), so the code reads `x @ W + b`, while PyTorch's nn.Linear keeps (out, in).
`state_dict()` gives minilm's layout (the arrays as they are, like every Module);
`hf_state_dict()`, `load_hf_state_dict()` and `hf_grads()` speak PyTorch's and transpose every
Linear weight, and `from_pretrained` / `save_pretrained` go through them. Embedding tables are
(rows, C) in both and are never transposed.
"""
import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import ClassVar

from ..backend import (as_host_array, get_xp, host_rng, new_dropout_rng, resolve_dtype,
                       to_numpy)
from ..io import WEIGHTS_NAME, load_safetensors, read_config, resolve_folder, save_pretrained_folder
from ..layers import (Dropout, Embedding, LayerNorm, Linear, Module, MultiHeadAttention, PostLNBlock,
                      new_param)
from ..ops.losses import cross_entropy_backward, cross_entropy_forward
from ..ops import (get_activation, linear_backward, linear_forward, padding_mask, tanh_backward,
                   tanh_forward)
from .checks import (as_embeds, as_ids, as_mask, check_config, hidden_grads, plus, require_config,
                     same_shape)
from .base import PreTrainedModel
from .output import ModelOutput

logger = logging.getLogger("minilm")


@dataclass
class BertConfig:
    """BERT hyper-parameters, under `transformers`' BertConfig names."""
    model_type: ClassVar[str] = "bert"
    vocab_size: int = 30522            # V: WordPiece vocabulary size
    hidden_size: int = 768             # C: model width
    num_hidden_layers: int = 12        # L: encoder layers
    num_attention_heads: int = 12      # H: attention heads (C must divide by H)
    intermediate_size: int = 3072      # F: feed-forward width
    hidden_act: str = "gelu"           # "gelu" is the exact erf GELU (GPT-2's is the tanh one)
    hidden_dropout_prob: float = 0.1   # dropout on the embeddings and on each residual branch
    attention_probs_dropout_prob: float = 0.1   # dropout on the attention probabilities
    max_position_embeddings: int = 512  # longest sequence (learned position table size)
    type_vocab_size: int = 2           # segment ids: 0 for sentence A, 1 for sentence B
    initializer_range: float = 0.02    # std of the normal initialisation
    layer_norm_eps: float = 1e-12      # LayerNorm eps (BERT's is tiny)
    pad_token_id: int = 0              # [PAD]: its word-embedding row starts at 0, gets no gradient
    num_labels: int = 2                # K: classes of the classification heads
    classifier_dropout: float = None   # dropout before the classifier (None: hidden_dropout_prob)
    id2label: dict = None              # class id -> name (None: LABEL_0, LABEL_1, ...)
    seed: int = 0                      # minilm only: initialisation and dropout seed

    def __post_init__(self):
        # types and ranges, each error naming the field (a config.json may hold "8" for 8)
        check_config(self, positive_ints=("vocab_size", "hidden_size", "num_hidden_layers",
                                          "num_attention_heads", "intermediate_size",
                                          "max_position_embeddings", "type_vocab_size", "num_labels"),
                     optional_ints=("pad_token_id",), ints=("seed",),
                     probabilities=("hidden_dropout_prob", "attention_probs_dropout_prob"),
                     optional_probabilities=("classifier_dropout",),
                     positive_floats=("layer_norm_eps",), nonnegative_floats=("initializer_range",))
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if not isinstance(self.hidden_act, str):
            raise TypeError(f"BertConfig.hidden_act must be a name such as 'gelu', got {self.hidden_act!r}")
        if self.seed < 0:
            raise ValueError(f"BertConfig.seed must be >= 0, got {self.seed}")
        if self.id2label is not None and not isinstance(self.id2label, dict):
            raise TypeError(f"BertConfig.id2label must be a dict {{id: name}} or None, got {self.id2label!r}")
        try:
            get_activation(self.hidden_act)
        except ValueError as e:                             # lists the known names
            raise ValueError(f"BertConfig.hidden_act: {e}") from None                     # unknown name: ValueError listing the known
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary [0, {self.vocab_size})")
        if self.id2label is not None:
            self.id2label = {int(k): v for k, v in self.id2label.items()}
            if sorted(self.id2label) != list(range(self.num_labels)):
                raise ValueError(f"id2label must name the classes 0..{self.num_labels - 1} "
                                 f"(num_labels={self.num_labels}), got ids {sorted(self.id2label)}")

    def to_dict(self, architecture=None):
        """The config.json that `transformers` reads: BertConfig names, model_type, and the labels
        as id2label / label2id (transformers derives num_labels from them)."""
        d = dataclasses.asdict(self)
        labels = self.id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
        del d["num_labels"]
        d.update(model_type="bert", position_embedding_type="absolute",
                 id2label={str(i): name for i, name in labels.items()},
                 label2id={name: i for i, name in labels.items()})
        if architecture:
            d["architectures"] = [architecture]
        return d

    @classmethod
    def from_dict(cls, d):
        """Build from a config.json dict; keys minilm does not use are ignored."""
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {d['position_embedding_type']!r} is not supported: "
                             "minilm's BERT has learned absolute positions only")
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ValueError("decoder / cross-attention BERT configs are not supported")
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if kw.get("id2label") is not None:
            id2label = {int(k): v for k, v in kw["id2label"].items()}
            kw.setdefault("num_labels", len(id2label))
            default = {i: f"LABEL_{i}" for i in range(len(id2label))}
            kw["id2label"] = None if id2label == default else id2label     # the default names
        return cls(**kw)


# ---- the encoder ------------------------------------------------------------------------------

class BertEmbeddings(Module):
    """x = dropout(LayerNorm(word[ids] + position[t] + token_type[tt])), t = 0 .. T-1."""

    def __init__(self, cfg, dtype, rng, dropout_rng):
        C, std = cfg.hidden_size, cfg.initializer_range
        self.word_embeddings = Embedding(cfg.vocab_size, C, dtype, rng, std)
        self.position_embeddings = Embedding(cfg.max_position_embeddings, C, dtype, rng, std)
        self.token_type_embeddings = Embedding(cfg.type_vocab_size, C, dtype, rng, std)
        self.LayerNorm = LayerNorm(C, cfg.layer_norm_eps, dtype)
        self.dropout = Dropout(cfg.hidden_dropout_prob, dropout_rng)
        # PyTorch's nn.Embedding(padding_idx=pad): the [PAD] row starts at zero and the lookup
        # never sends it a gradient (the tied MLM decoder still does)
        self.pad_token_id = cfg.pad_token_id
        if self.pad_token_id is not None:
            self.word_embeddings.weight.data[self.pad_token_id] = 0.0
        self.cache = None

    def named_children(self):
        return [("word_embeddings", self.word_embeddings), ("position_embeddings", self.position_embeddings),
                ("token_type_embeddings", self.token_type_embeddings), ("LayerNorm", self.LayerNorm),
                ("dropout", self.dropout)]

    def forward(self, ids, token_type_ids, inputs_embeds=None):   # (B, T) ints -> (B, T, C)
        """`inputs_embeds` (B, T, C), when given, stands in for word[ids] (ids is then None)."""
        xp = get_xp(token_type_ids)
        T = token_type_ids.shape[1]
        words = self.word_embeddings.forward(ids) if inputs_embeds is None else inputs_embeds
        x = (words                                                          # (B, T, C)
             + self.position_embeddings.forward(xp.arange(T)[None, :])      # (1, T, C)
             + self.token_type_embeddings.forward(token_type_ids))          # (B, T, C)
        self.cache = (ids,)
        return self.dropout.forward(self.LayerNorm.forward(x))

    def backward(self, dout):
        """(B, T, C) -> d loss / d inputs_embeds (B, T, C) after a forward on inputs_embeds,
        else None (ids have no gradient)."""
        (ids,) = self._check_cache()
        # undo: out = dropout(LayerNorm(x))
        dx = self.LayerNorm.backward(self.dropout.backward(dout))           # (B, T, C)
        # undo: x = word[ids] + position[t] + token_type[tt]   (a sum: each table gets dx)
        self.token_type_embeddings.backward(dx)
        self.position_embeddings.backward(dx)               # positions (1, T), shared by the batch
        if ids is None:
            return dx                                                       # d loss / d inputs_embeds
        if self.pad_token_id is not None:
            dx = dx * (ids != self.pad_token_id)[..., None]                 # padding_idx: no gradient
        self.word_embeddings.backward(dx)
        return None


class BertOutput(Module):
    """The add & norm after a sub-layer, as the checkpoint names it: `dense` (W_o, or W_2 of
    the feed-forward network), `LayerNorm`, `dropout`. Used twice a layer, as
    `attention.output` (transformers' BertSelfOutput) and as `output`; BertLayer (the shared
    PostLNBlock) runs the computation: out = LayerNorm(x + dropout(h W + b))."""

    def __init__(self, n_in, cfg, dtype, rng, dropout_rng):
        self.dense = Linear(n_in, cfg.hidden_size, dtype=dtype, rng=rng, std=cfg.initializer_range)
        self.LayerNorm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, dtype)
        self.dropout = Dropout(cfg.hidden_dropout_prob, dropout_rng)

    def named_children(self):
        return [("dense", self.dense), ("LayerNorm", self.LayerNorm), ("dropout", self.dropout)]


class BertAttention(Module):
    """`self` holds the query / key / value projections (a MultiHeadAttention without its own
    output projection); `output` holds W_o with the add & norm (BertOutput)."""

    def __init__(self, cfg, dtype, rng, dropout_rng):
        self.self_attention = MultiHeadAttention(
            cfg.hidden_size, cfg.num_attention_heads, cfg.attention_probs_dropout_prob, dtype, rng,
            cfg.initializer_range, names=("query", "key", "value", None), dropout_rng=dropout_rng)
        self.output = BertOutput(cfg.hidden_size, cfg, dtype, rng, dropout_rng)

    def named_children(self):
        return [("self", self.self_attention), ("output", self.output)]


class BertIntermediate(Module):
    """h = act(a W_1 + b_1): the first half of the feed-forward network, (B, T, C) -> (B, T, F)."""

    def __init__(self, cfg, dtype, rng):
        self.dense = Linear(cfg.hidden_size, cfg.intermediate_size, dtype=dtype, rng=rng,
                            std=cfg.initializer_range)
        self.act_forward, self.act_backward = get_activation(cfg.hidden_act)
        self.cache = None

    def named_children(self):
        return [("dense", self.dense)]

    def forward(self, a):
        h, self.cache = self.act_forward(self.dense.forward(a))     # (B, T, F)
        return h

    def backward(self, dh):
        return self.dense.backward(self.act_backward(dh, self._check_cache()))   # undo: h = act(a W_1 + b_1)


class BertLayer(PostLNBlock):
    """Post-LN encoder layer, the shared PostLNBlock (layers/block.py) with BERT's names:
        a   = LayerNorm(x + dropout(attention(x) W_o + b_o))   attention.{self, output}
        h   = gelu(a W_1 + b_1)                                intermediate
        out = LayerNorm(a + dropout(h W_2 + b_2))              output
    The checkpoint keeps W_o beside the first norm and W_2 beside the second, so each
    sub-layer's f is a chain of two pieces of the tree: attention.self (the attribute
    `self_attention`) then attention.output.dense; intermediate then output.dense.

        layer.forward(x, key_mask=None) -> (B, T, C);  layer.backward(dout) -> dx
    """

    def __init__(self, cfg, dtype, rng, dropout_rng):
        super().__init__(
            tree=[("attention", BertAttention(cfg, dtype, rng, dropout_rng)),
                  ("intermediate", BertIntermediate(cfg, dtype, rng)),
                  ("output", BertOutput(cfg.intermediate_size, cfg, dtype, rng, dropout_rng))],
            roles={"attn": ("attention.self_attention", "attention.output.dense"),
                   "attn_norm": "attention.output.LayerNorm",
                   "attn_dropout": "attention.output.dropout",
                   "ffn": ("intermediate", "output.dense"),
                   "ffn_norm": "output.LayerNorm",
                   "ffn_dropout": "output.dropout"})


class BertEncoder(Module):
    """The stack of L BertLayers, named `layer.0`, `layer.1`, ..."""

    def __init__(self, cfg, dtype, rng, dropout_rng):
        self.layer = [BertLayer(cfg, dtype, rng, dropout_rng) for _ in range(cfg.num_hidden_layers)]

    def named_children(self):
        return [(f"layer.{i}", layer) for i, layer in enumerate(self.layer)]

    def forward(self, x, key_mask=None):
        """(B, T, C) -> (out (B, T, C), hidden_states: the input, then each layer's output)"""
        hidden_states = [x]
        for layer in self.layer:
            x = layer.forward(x, key_mask=key_mask)
            hidden_states.append(x)
        return x, hidden_states

    def backward(self, dout, dhidden_states):
        """dout (B, T, C) and dhidden_states: L + 1 extra gradients (or None) -> dx (B, T, C)"""
        dout = plus(dout, dhidden_states[-1])
        for i in reversed(range(len(self.layer))):
            # undo: x_{i+1} = layer_i(x_i)
            dout = plus(self.layer[i].backward(dout), dhidden_states[i])
        return dout


class BertPooler(Module):
    """pooled = tanh(x[:, 0] W_p + b_p): the [CLS] position summarises the sequence."""

    def __init__(self, cfg, dtype, rng):
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size, dtype=dtype, rng=rng, std=cfg.initializer_range)
        self.cache = None

    def named_children(self):
        return [("dense", self.dense)]

    def forward(self, x):                                   # (B, T, C) -> (B, C)
        pooled, tanh_cache = tanh_forward(self.dense.forward(x[:, 0]))   # (B, C)
        self.cache = (tanh_cache, x.shape)
        return pooled

    def backward(self, dpooled):                            # (B, C) -> (B, T, C)
        tanh_cache, shape = self._check_cache()
        # undo: pooled = tanh(x[:, 0] W_p + b_p)
        dfirst = self.dense.backward(tanh_backward(dpooled, tanh_cache))  # (B, C)
        # undo: x[:, 0]   (only the [CLS] position receives a gradient)
        dx = get_xp(dpooled).zeros(shape, dtype=dpooled.dtype)            # (B, T, C)
        dx[:, 0] = dfirst
        return dx


# ---- what every BERT model shares: inputs, dropout stream, checkpoints -------------------------

def _check_range(name, ids, low, high, what, allow_ignore=False):
    """ValueError naming the first bad value when an id array leaves [low, high) (-100 allowed
    when allow_ignore: Hugging Face's "ignore this position")."""
    host = to_numpy(ids).reshape(-1)
    if allow_ignore:
        host = host[host != -100]
    if host.size:
        lo, hi = int(host.min()), int(host.max())
        if lo < low or hi >= high:
            raise ValueError(f"{name} contains {lo if lo < low else hi}, outside {what}"
                             + (" (-100 marks ignored positions)" if allow_ignore else ""))


def _is_buffer_key(key):
    """Non-parameter tensors that some checkpoints carry: the position / token-type id buffers
    (persistent in transformers 4), and the tied MLM decoder weight (= word_embeddings)."""
    return key.endswith(("embeddings.position_ids", "embeddings.token_type_ids",
                         "cls.predictions.decoder.weight"))


class BertPreTrainedModel(PreTrainedModel):
    """Base of BertModel and the heads (as in transformers): the dropout stream, input checks,
    and Hugging Face checkpoints. Subclasses write __init__, named_children, forward, backward."""

    def transformer_blocks(self):
        bert = getattr(self, "bert", self)                  # a task model holds a BertModel
        return bert.encoder.layer                          # the list itself: entries can be swapped

    def _init_common(self, config, dtype, dropout_gen=None):
        """Config, dtype, and the one random stream every dropout layer of the model draws from
        (a head passes its BertModel's, so a single seed drives the whole model)."""
        self.config = config
        self.dtype = resolve_dtype(dtype)
        if dropout_gen is None:
            dropout_gen = new_dropout_rng(config.seed + 1)
        self._dropout_gen = dropout_gen
        self._loss_cache = None

    def get_input_embeddings(self):
        """The word-embedding layer (an Embedding), as transformers' get_input_embeddings()."""
        return getattr(self, "bert", self).embeddings.word_embeddings


    # -- Hugging Face layout: Linear weights transposed to (out, in) ---------------------------
    def _linear_weight_names(self):
        return {name + ".weight" for name, m in self.named_modules() if isinstance(m, Linear)}

    def hf_state_dict(self):
        """{transformers name: NumPy array} in PyTorch's layout (Linear weights (out, in))."""
        transposed = self._linear_weight_names()
        return {name: (a.T.copy() if name in transposed else a)
                for name, a in self.state_dict().items()}

    def hf_grads(self):
        """{transformers name: NumPy gradient} in PyTorch's layout, to compare with torch's .grad."""
        transposed = self._linear_weight_names()
        return {name: to_numpy(p.grad.T if name in transposed else p.grad).copy()
                for name, p in self.named_parameters()}

    def _hf_key_to_name(self, key, names):
        """A checkpoint key -> this model's parameter name, or None. Accepts keys with or without
        the `bert.` prefix, the old TensorFlow-era `LayerNorm.gamma` / `beta`, and the tied
        `cls.predictions.decoder.bias` (the same tensor as `cls.predictions.bias`)."""
        k = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if k.endswith("cls.predictions.decoder.bias"):
            k = k[: -len("decoder.bias")] + "bias"
        for candidate in (k, "bert." + k, k[len("bert."):] if k.startswith("bert.") else None):
            if candidate in names:
                return candidate
        return None

    def load_hf_state_dict(self, state_dict, strict=True):
        """Copy a transformers state dict (PyTorch layout) into the parameters.

        Returns (missing_keys, unexpected_keys): this model's names not found, and checkpoint keys
        that match nothing (buffers such as `embeddings.position_ids` are skipped silently).
        With strict=True either one raises KeyError; a shape mismatch always raises ValueError.
        """
        names = dict(self.named_parameters())
        transposed = self._linear_weight_names()
        state, unexpected = {}, []
        for key, value in state_dict.items():
            name = self._hf_key_to_name(key, names)
            if name is None:
                if not _is_buffer_key(key):
                    unexpected.append(key)
                continue
            if name in state:                               # cls.predictions.bias given twice
                continue
            want = tuple(names[name].shape)
            want = want[::-1] if name in transposed else want
            if tuple(value.shape) != want:
                raise ValueError(f"shape mismatch for {key!r}: checkpoint has {tuple(value.shape)}, "
                                 f"{type(self).__name__} expects {want} (PyTorch layout)")
            state[name] = value.T if name in transposed else value
        missing = [n for n in names if n not in state]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict does not match {type(self).__name__}: "
                           f"missing keys {missing}, unexpected keys {unexpected}")
        self.load_state_dict(state, strict=False)
        return missing, unexpected

    @classmethod
    def from_pretrained(cls, folder, dtype="float32", num_labels=None, output_loading_info=False):
        """Load a Hugging Face BERT folder (config.json + model.safetensors).

        Any BERT checkpoint loads into any of the classes: the shared weights are copied, the
        rest (a new head) keeps its fresh initialisation and is reported as missing, like
        transformers ("Some weights ... were newly initialized"). `num_labels` overrides the
        config's (a new classifier). Returns the model in eval mode (call `.train()` before
        fine-tuning), or (model, {"missing_keys": [...], "unexpected_keys": [...]}) with
        output_loading_info=True.
        """
        folder = resolve_folder(folder)
        cfg = read_config(folder, expected_model_types=("bert",))
        config = BertConfig.from_dict(cfg)
        if num_labels is not None and num_labels != config.num_labels:
            config = dataclasses.replace(config, num_labels=num_labels, id2label=None)
        model = cls(config, dtype=dtype)
        tensors = load_safetensors(os.path.join(str(folder), WEIGHTS_NAME))
        missing, unexpected = model.load_hf_state_dict(tensors, strict=False)
        if len(missing) == len(model.named_parameters()):
            raise ValueError(f"{folder} has no weight {cls.__name__} can use: is it a BERT checkpoint? "
                             f"(first keys: {list(tensors)[:5]})")
        if missing:
            logger.warning("Some weights of %s were not in the checkpoint %s and are newly initialized: "
                           "%s. Train the model before using it.", cls.__name__, folder, missing)
        if unexpected:
            logger.warning("Some weights in the checkpoint %s were not used by %s: %s",
                           folder, cls.__name__, unexpected)
        model.eval()
        if output_loading_info:
            return model, {"missing_keys": missing, "unexpected_keys": unexpected}
        return model

    def save_pretrained(self, folder):
        """Write config.json + model.safetensors in transformers' names and layout (the tied MLM
        decoder weight is left out, as transformers does). Crash-safe (see
        `minilm.io.atomic_folder`)."""
        return save_pretrained_folder(folder, self.config.to_dict(architecture=type(self).__name__),
                                      self.hf_state_dict())

    def prune_heads(self, heads):
        """Remove attention heads {layer: [head indices]} for good (as transformers'
        `prune_heads`): their query/key/value columns and their rows of W_o, which BERT keeps
        in `attention.output.dense`."""
        model = getattr(self, "bert", self)
        for layer, hs in heads.items():
            attention = model.encoder.layer[layer].attention
            attention.self_attention.prune_heads(hs, out_proj=attention.output.dense)

    # -- shared input checks -------------------------------------------------------------------
    def _check_inputs(self, input_ids, attention_mask, token_type_ids, inputs_embeds=None):
        """-> (ids or None, inputs_embeds or None, key_mask, token_type_ids) on the backend, or a
        clear error. Exactly one of input_ids and inputs_embeds (B, T, C)."""
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            ids, embeds = as_ids("input_ids", input_ids, cfg.vocab_size), None
            like = ids
        else:
            ids, embeds = None, as_embeds("inputs_embeds", inputs_embeds, cfg.hidden_size, self.dtype)
            like = embeds[..., 0]                           # (B, T), for the shape checks
        B, T = like.shape
        if T == 0:
            raise ValueError("input_ids is empty: need at least one token per sequence")
        if T > cfg.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings="
                             f"{cfg.max_position_embeddings}: truncate the input")
        key_mask = None
        if attention_mask is not None:
            am = as_mask("attention_mask", attention_mask, like)    # 0/1, bool or float 0./1.
            if not bool(am.any(axis=1).all()):
                raise ValueError("a row of attention_mask is all zeros: every sequence needs a real token")
            key_mask = padding_mask(am)                     # (B, 1, 1, T)
        if token_type_ids is None:
            tt = get_xp(like).zeros((B, T), dtype="int64")   # one segment
        else:
            tt = as_ids("token_type_ids", token_type_ids)
            same_shape("token_type_ids", tt, "input_ids", like)
            _check_range("token_type_ids", tt, 0, cfg.type_vocab_size,
                         f"[0, type_vocab_size={cfg.type_vocab_size})")
        return ids, embeds, key_mask, tt

    def _labels(self, name, labels, num_classes, shape, what, allow_ignore=True):
        """Integer targets of the given shape, each in [0, num_classes) (or -100: ignored).
        One label per example may also come as (B, 1), which transformers flattens too."""
        if len(shape) == 1:
            host = as_host_array(labels)
            if getattr(host, "ndim", 0) == 2 and host.shape[1] == 1:
                labels = host.reshape(-1)
        lab = as_ids(name, labels, ndim=len(shape))
        if tuple(lab.shape) != tuple(shape):
            raise ValueError(f"{name} shape {tuple(lab.shape)} must be {tuple(shape)}")
        _check_range(name, lab, 0, num_classes, what, allow_ignore=allow_ignore)
        return lab

    def _require_loss(self):
        if self._loss_cache is None:
            raise RuntimeError("backward() needs a loss: call the model with labels first "
                               "(or pass the gradients of its outputs)")
        cache, self._loss_cache = self._loss_cache, None
        return cache

    def _dlogits(self, dlogits, dhidden_states, loss_scale=1.0):
        """The logits' gradient for backward: `dlogits` when given; else, unless only
        hidden-state gradients were passed for a forward without labels, the cross-entropy's
        (from the last forward's loss), times `loss_scale`. None: nothing reaches the logits."""
        if dlogits is None and (dhidden_states is None or self._loss_cache is not None):
            ce_cache, shape = self._require_loss()
            dlogits = cross_entropy_backward(loss_scale, ce_cache).reshape(shape)
        self._loss_cache = None
        return dlogits


# ---- the base model -------------------------------------------------------------------------

class BertModel(BertPreTrainedModel):
    """The BERT encoder (transformers' `BertModel`) with hand-written backward.

        out = model(input_ids, attention_mask=None, token_type_ids=None)
        out.last_hidden_state   (B, T, C)      out.pooler_output   (B, C), None without a pooler
        model.backward(dlast_hidden_state, dpooler_output)      # either may be None
    """

    def __init__(self, config, dtype="float32", add_pooling_layer=True):
        require_config(type(self).__name__, config, BertConfig)
        self._init_common(config, dtype)
        rng = host_rng(config.seed)                 # initialisation (host, backend-independent)
        dropout_rng = self._dropout_gen             # the Generator itself: layers draw from it
        self.embeddings = BertEmbeddings(config, self.dtype, rng, dropout_rng)
        self.encoder = BertEncoder(config, self.dtype, rng, dropout_rng)
        self.pooler = BertPooler(config, self.dtype, rng) if add_pooling_layer else None

    def named_children(self):
        return ([("embeddings", self.embeddings), ("encoder", self.encoder)]
                + ([("pooler", self.pooler)] if self.pooler is not None else []))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None,
                output_attentions=False, output_hidden_states=False):
        """input_ids, attention_mask (1 = real token, 0 = padding), token_type_ids: (B, T) ints;
        inputs_embeds: (B, T, C) in place of the word-embedding lookup (then no input_ids)
        -> ModelOutput(last_hidden_state (B, T, C), pooler_output (B, C) or None,
                       attentions: L arrays (B, H, T, T) with output_attentions (softmax
                       probabilities before dropout), hidden_states: L + 1 arrays (B, T, C)
                       with output_hidden_states (the embeddings' output, then each layer's))"""
        ids, embeds, key_mask, tt = self._check_inputs(input_ids, attention_mask, token_type_ids,
                                                       inputs_embeds)
        x = self.embeddings.forward(ids, tt, embeds)        # (B, T, C)
        x, hidden_states = self.encoder.forward(x, key_mask)   # (B, T, C), L + 1 x (B, T, C)
        self._hidden_shape = x.shape
        pooled = self.pooler.forward(x) if self.pooler is not None else None   # (B, C)
        attentions = None
        if output_attentions:
            attentions = tuple(layer.attention.self_attention.attention_probs
                               for layer in self.encoder.layer)
        return ModelOutput(last_hidden_state=x, pooler_output=pooled, attentions=attentions,
                           hidden_states=tuple(hidden_states) if output_hidden_states else None)

    def backward(self, dlast_hidden_state=None, dpooler_output=None, dhidden_states=None):
        """Accumulate into every parameter's .grad the gradient of any loss whose gradients
        w.r.t. the outputs are given (None: that output did not enter the loss).

        dhidden_states: a tuple aligned with out.hidden_states (None entries skipped).
        Returns d loss / d inputs_embeds (B, T, C) after a forward on inputs_embeds, else None."""
        if dlast_hidden_state is None and dpooler_output is None and dhidden_states is None:
            raise ValueError("BertModel.backward needs dlast_hidden_state, dpooler_output "
                             "and/or dhidden_states")
        dhs = hidden_grads(dhidden_states, len(self.encoder.layer) + 1)
        dx = dlast_hidden_state
        if self.pooler is not None:
            if dpooler_output is None:
                self.pooler.cache = None                    # pooled output unused by the loss
            else:
                # undo: pooled = tanh(x[:, 0] W_p + b_p)   (x reaches the loss both ways: add)
                dpool = self.pooler.backward(dpooler_output)
                dx = dpool if dx is None else dx + dpool
        elif dpooler_output is not None:
            raise ValueError("this BertModel has no pooler, so dpooler_output cannot be used")
        if dx is None:                                      # only hidden states enter the loss
            dx = get_xp(self.embeddings.LayerNorm.weight.data).zeros(self._hidden_shape, self.dtype)
        # undo: x = encoder(embeddings(ids))
        return self.embeddings.backward(self.encoder.backward(dx, dhs))


# ---- heads -------------------------------------------------------------------------------------

class BertPredictionHeadTransform(Module):
    """h = LayerNorm(act(x W + b)): the MLM head's extra layer before the decoder."""

    def __init__(self, cfg, dtype, rng):
        self.dense = Linear(cfg.hidden_size, cfg.hidden_size, dtype=dtype, rng=rng, std=cfg.initializer_range)
        self.act_forward, self.act_backward = get_activation(cfg.hidden_act)
        self.LayerNorm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, dtype)
        self.cache = None

    def named_children(self):
        return [("dense", self.dense), ("LayerNorm", self.LayerNorm)]

    def forward(self, x):                                   # (B, T, C) -> (B, T, C)
        g, self.cache = self.act_forward(self.dense.forward(x))
        return self.LayerNorm.forward(g)

    def backward(self, dout):
        dg = self.LayerNorm.backward(dout)                  # undo: h = LayerNorm(g)
        return self.dense.backward(self.act_backward(dg, self._check_cache()))   # undo: g = act(x W + b)


class BertLMPredictionHead(Module):
    """logits = transform(x) @ word_embeddings^T + bias: the decoder is tied to the input
    embedding table (one Parameter used twice), and only its bias is new (`cls.predictions.bias`)."""

    def __init__(self, cfg, dtype, rng, word_embeddings):
        self.transform = BertPredictionHeadTransform(cfg, dtype, rng)
        self.decoder_weight = word_embeddings               # the shared (V, C) Parameter, not a copy
        self.bias = new_param((cfg.vocab_size,), dtype, None, fill=0.0)   # (V,)
        self.cache = None

    def own_parameters(self):
        return [("bias", self.bias)]

    def named_children(self):
        return [("transform", self.transform)]

    def forward(self, x):                                   # (B, T, C) -> (B, T, V)
        h = self.transform.forward(x)                       # (B, T, C)
        logits, self.cache = linear_forward(h, self.decoder_weight.data.T, self.bias.data)  # (B, T, V)
        return logits

    def backward(self, dlogits):                            # (B, T, V) -> (B, T, C)
        # undo: logits = h E^T + bias   (E^T's gradient, transposed back, adds into the table)
        dh, dEt, dbias = linear_backward(dlogits, self._check_cache())   # dEt: (C, V)
        self.decoder_weight.grad += dEt.T
        self.bias.grad += dbias
        # undo: h = transform(x)
        return self.transform.backward(dh)


class BertOnlyMLMHead(Module):
    """`cls` of BertForMaskedLM: just the masked-LM predictions."""

    def __init__(self, cfg, dtype, rng, word_embeddings):
        self.predictions = BertLMPredictionHead(cfg, dtype, rng, word_embeddings)

    def named_children(self):
        return [("predictions", self.predictions)]

    def forward(self, x):                                   # (B, T, C) -> (B, T, V)
        return self.predictions.forward(x)

    def backward(self, dlogits):                            # (B, T, V) -> (B, T, C)
        return self.predictions.backward(dlogits)


class BertPreTrainingHeads(Module):
    """`cls` of BertForPreTraining: masked-LM predictions on every position, and next-sentence
    prediction (is B the sentence that followed A?) on the pooled [CLS] vector."""

    def __init__(self, cfg, dtype, rng, word_embeddings):
        self.predictions = BertLMPredictionHead(cfg, dtype, rng, word_embeddings)
        self.seq_relationship = Linear(cfg.hidden_size, 2, dtype=dtype, rng=rng, std=cfg.initializer_range)

    def named_children(self):
        return [("predictions", self.predictions), ("seq_relationship", self.seq_relationship)]

    def forward(self, x, pooled):                           # (B, T, C), (B, C) -> (B, T, V), (B, 2)
        return self.predictions.forward(x), self.seq_relationship.forward(pooled)

    def backward(self, dprediction_logits, dseq_relationship_logits):
        """Returns (dx, dpooled)."""
        return (self.predictions.backward(dprediction_logits),
                self.seq_relationship.backward(dseq_relationship_logits))


class BertForPreTraining(BertPreTrainedModel):
    """BERT's pre-training objective: masked LM + next-sentence prediction.

        out = model(input_ids, attention_mask, token_type_ids, labels=None, next_sentence_label=None)
        out.prediction_logits (B, T, V), out.seq_relationship_logits (B, 2)
        out.loss = CE(masked LM, labels != -100) + CE(NSP; 0 = B follows A, 1 = B is random)
    transformers returns no loss unless both targets are given; minilm sums the ones given.
    """

    def __init__(self, config, dtype="float32"):
        require_config(type(self).__name__, config, BertConfig)
        self.bert = BertModel(config, dtype, add_pooling_layer=True)
        self._init_common(config, dtype, self.bert.dropout_generator())
        rng = host_rng(config.seed + 2)                     # the head's own initialisation stream
        self.cls = BertPreTrainingHeads(config, self.dtype, rng, self.bert.embeddings.word_embeddings.weight)

    def named_children(self):
        return [("bert", self.bert), ("cls", self.cls)]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                next_sentence_label=None, inputs_embeds=None,
                output_attentions=False, output_hidden_states=False):
        self._loss_cache = None
        out = self.bert.forward(input_ids, attention_mask, token_type_ids, inputs_embeds,
                                output_attentions, output_hidden_states)
        prediction_logits, seq_relationship_logits = self.cls.forward(out.last_hidden_state,
                                                                      out.pooler_output)
        B, T, V = prediction_logits.shape
        self._logits_shape = (B, T, V)
        loss, mlm_cache, nsp_cache = None, None, None
        if labels is not None:
            lab = self._labels("labels", labels, V, (B, T), f"the vocabulary [0, {V})")
            loss, mlm_cache = cross_entropy_forward(prediction_logits.reshape(B * T, V), lab.reshape(-1))
        if next_sentence_label is not None:
            nsl = self._labels("next_sentence_label", next_sentence_label, 2, (B,),
                               "{0, 1} (0 = B follows A, 1 = B is random)")
            nsp_loss, nsp_cache = cross_entropy_forward(seq_relationship_logits, nsl)
            loss = nsp_loss if loss is None else loss + nsp_loss
        if loss is not None:
            self._loss_cache = (mlm_cache, nsp_cache)
        return ModelOutput(loss=loss, prediction_logits=prediction_logits,
                           seq_relationship_logits=seq_relationship_logits,
                           attentions=out.attentions, hidden_states=out.hidden_states)

    def backward(self, dprediction_logits=None, dseq_relationship_logits=None, dhidden_states=None,
                 loss_scale=1.0):
        """Gradients of out.loss (no arguments), or of any loss given its gradients w.r.t. the
        two outputs (None: that output did not enter the loss), plus extra gradients on the
        hidden states. Returns d loss / d inputs_embeds after a forward on inputs_embeds.
        `loss_scale` multiplies the loss's gradient (float16 loss scaling, as GPT's)."""
        if dprediction_logits is None and dseq_relationship_logits is None and (
                dhidden_states is None or self._loss_cache is not None):
            mlm_cache, nsp_cache = self._require_loss()
            if mlm_cache is not None:
                dprediction_logits = cross_entropy_backward(loss_scale, mlm_cache).reshape(self._logits_shape)
            if nsp_cache is not None:
                dseq_relationship_logits = cross_entropy_backward(loss_scale, nsp_cache)
        self._loss_cache = None
        weight = self.bert.embeddings.word_embeddings.weight.data
        xp, dtype = get_xp(weight), weight.dtype           # float16 in a mixed-precision step
        B, T, V = self._logits_shape
        if dprediction_logits is None:                      # that output did not enter the loss
            dprediction_logits = xp.zeros((B, T, V), dtype=dtype)
        if dseq_relationship_logits is None:
            dseq_relationship_logits = xp.zeros((B, 2), dtype=dtype)
        # undo: prediction_logits, seq_relationship_logits = cls(x, pooled)
        dx, dpooled = self.cls.backward(dprediction_logits, dseq_relationship_logits)
        # undo: x, pooled = bert(input_ids)
        return self.bert.backward(dx, dpooled, dhidden_states)


class BertForMaskedLM(BertPreTrainedModel):
    """Masked-language-model head: predict the original token at each position whose label is
    not -100 (the ~15% that were masked).

        out = model(input_ids, attention_mask, token_type_ids, labels=None)
        out.logits (B, T, V), out.loss = mean CE over labels != -100
    """

    def __init__(self, config, dtype="float32"):
        require_config(type(self).__name__, config, BertConfig)
        self.bert = BertModel(config, dtype, add_pooling_layer=False)
        self._init_common(config, dtype, self.bert.dropout_generator())
        rng = host_rng(config.seed + 2)
        self.cls = BertOnlyMLMHead(config, self.dtype, rng, self.bert.embeddings.word_embeddings.weight)

    def named_children(self):
        return [("bert", self.bert), ("cls", self.cls)]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                inputs_embeds=None,
                output_attentions=False, output_hidden_states=False):
        self._loss_cache = None
        out = self.bert.forward(input_ids, attention_mask, token_type_ids, inputs_embeds,
                                output_attentions, output_hidden_states)
        x = out.last_hidden_state                           # (B, T, C)
        logits = self.cls.forward(x)                        # (B, T, V)
        B, T, V = logits.shape
        loss = None
        if labels is not None:
            lab = self._labels("labels", labels, V, (B, T), f"the vocabulary [0, {V})")
            loss, ce_cache = cross_entropy_forward(logits.reshape(B * T, V), lab.reshape(-1))
            self._loss_cache = (ce_cache, (B, T, V))
        return ModelOutput(loss=loss, logits=logits, attentions=out.attentions,
                           hidden_states=out.hidden_states)

    def backward(self, dlogits=None, dhidden_states=None, loss_scale=1.0):
        """Gradients of out.loss (its gradient times `loss_scale`, float16 loss scaling), or
        of another loss given dlogits (B, T, V)."""
        dlogits = self._dlogits(dlogits, dhidden_states, loss_scale)
        if dlogits is None:                                 # only hidden states enter the loss
            return self.bert.backward(dhidden_states=dhidden_states)
        # undo: logits = cls(x)
        dx = self.cls.backward(dlogits)
        # undo: x = bert(input_ids)
        return self.bert.backward(dx, dhidden_states=dhidden_states)


class _BertClassifier(BertPreTrainedModel):
    """What the two classification heads share: logits = dropout(features) W_c + b_c, where
    the features are the pooled [CLS] vector (B, C) or every position's vector (B, T, C)."""
    per_token = False

    def __init__(self, config, dtype="float32"):
        require_config(type(self).__name__, config, BertConfig)
        self.bert = BertModel(config, dtype, add_pooling_layer=not self.per_token)
        self._init_common(config, dtype, self.bert.dropout_generator())
        rng = host_rng(config.seed + 2)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p, self._dropout_gen)
        self.classifier = Linear(config.hidden_size, config.num_labels, dtype=self.dtype, rng=rng,
                                 std=config.initializer_range)

    def named_children(self):
        return [("bert", self.bert), ("dropout", self.dropout), ("classifier", self.classifier)]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                inputs_embeds=None, output_attentions=False, output_hidden_states=False):
        self._loss_cache = None
        out = self.bert.forward(input_ids, attention_mask, token_type_ids, inputs_embeds,
                                output_attentions, output_hidden_states)
        features = out.last_hidden_state if self.per_token else out.pooler_output   # (B, T, C) | (B, C)
        logits = self.classifier.forward(self.dropout.forward(features))           # (B, T, K) | (B, K)
        K = logits.shape[-1]
        loss = None
        if labels is not None:
            if K == 1 and not self.per_token:
                raise NotImplementedError("num_labels=1 means regression (MSE) in transformers; minilm's "
                                          "BertForSequenceClassification only classifies (num_labels >= 2)")
            lab = self._labels("labels", labels, K, logits.shape[:-1], f"the classes [0, num_labels={K})")
            loss, ce_cache = cross_entropy_forward(logits.reshape(-1, K), lab.reshape(-1))
            self._loss_cache = (ce_cache, logits.shape)
        return ModelOutput(loss=loss, logits=logits, attentions=out.attentions,
                           hidden_states=out.hidden_states)

    def backward(self, dlogits=None, dhidden_states=None, loss_scale=1.0):
        """Gradients of out.loss (its gradient times `loss_scale`, float16 loss scaling), or
        of another loss given dlogits (shaped as out.logits)."""
        dlogits = self._dlogits(dlogits, dhidden_states, loss_scale)
        if dlogits is None:                                 # only hidden states enter the loss
            return self.bert.backward(dhidden_states=dhidden_states)
        # undo: logits = dropout(features) W_c + b_c
        dfeatures = self.dropout.backward(self.classifier.backward(dlogits))
        # undo: features = bert(input_ids).last_hidden_state or .pooler_output
        if self.per_token:
            return self.bert.backward(dfeatures, None, dhidden_states)
        return self.bert.backward(None, dfeatures, dhidden_states)


class BertForSequenceClassification(_BertClassifier):
    """One label a sequence (sentiment, entailment, ...) from the pooled [CLS] vector.

        logits = dropout(pooled) W_c + b_c                              (B, K)
        out = model(input_ids, attention_mask, token_type_ids, labels=None)   labels: (B,) in [0, K)
    """
    per_token = False


class BertForTokenClassification(_BertClassifier):
    """One label a token (named entities, part of speech) from each position's vector.

        logits = dropout(x) W_c + b_c                                   (B, T, K)
        labels: (B, T) in [0, K), -100 where there is nothing to predict (padding, sub-words)
    """
    per_token = True


class BertForQuestionAnswering(BertPreTrainedModel):
    """Extractive QA (SQuAD): the answer is the span of the context from `start` to `end`.

        [start_logits, end_logits] = x W_qa + b_qa                      (B, T) each
        loss = (CE(start_logits, start_positions) + CE(end_logits, end_positions)) / 2
    As in transformers the softmax runs over all T positions, padding included. Positions must
    lie in [0, T) with start <= end (transformers instead clamps them and ignores position T).
    """

    def __init__(self, config, dtype="float32"):
        require_config(type(self).__name__, config, BertConfig)
        if config.num_labels != 2:                # transformers sizes qa_outputs by num_labels too
            raise ValueError(f"BertForQuestionAnswering needs num_labels=2 (start and end logits), "
                             f"got {config.num_labels}")
        self.bert = BertModel(config, dtype, add_pooling_layer=False)
        self._init_common(config, dtype, self.bert.dropout_generator())
        rng = host_rng(config.seed + 2)
        self.qa_outputs = Linear(config.hidden_size, 2, dtype=self.dtype, rng=rng, std=config.initializer_range)

    def named_children(self):
        return [("bert", self.bert), ("qa_outputs", self.qa_outputs)]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, inputs_embeds=None,
                output_attentions=False, output_hidden_states=False):
        self._loss_cache = None
        out = self.bert.forward(input_ids, attention_mask, token_type_ids, inputs_embeds,
                                output_attentions, output_hidden_states)
        x = out.last_hidden_state                           # (B, T, C)
        logits = self.qa_outputs.forward(x)                 # (B, T, 2)
        start_logits, end_logits = logits[..., 0].copy(), logits[..., 1].copy()   # (B, T) each
        B, T = start_logits.shape
        loss = None
        if (start_positions is None) != (end_positions is None):
            raise ValueError("pass both start_positions and end_positions (or neither)")
        if start_positions is not None:
            where = f"the sequence positions [0, {T})"
            start = self._labels("start_positions", start_positions, T, (B,), where, allow_ignore=False)
            end = self._labels("end_positions", end_positions, T, (B,), where, allow_ignore=False)
            after = to_numpy(start > end)
            if after.any():
                b = int(after.argmax())
                raise ValueError(f"start_positions[{b}] = {int(start[b])} comes after "
                                 f"end_positions[{b}] = {int(end[b])}: a span needs start <= end")
            start_loss, start_cache = cross_entropy_forward(start_logits, start)
            end_loss, end_cache = cross_entropy_forward(end_logits, end)
            loss = (start_loss + end_loss) / 2
            self._loss_cache = (start_cache, end_cache)
        return ModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                           attentions=out.attentions, hidden_states=out.hidden_states)

    def backward(self, dstart_logits=None, dend_logits=None, dhidden_states=None, loss_scale=1.0):
        """Gradients of out.loss (its gradient times `loss_scale`, float16 loss scaling), or
        of another loss given dstart_logits and dend_logits (B, T)."""
        if dstart_logits is None and dend_logits is None and (
                dhidden_states is None or self._loss_cache is not None):
            start_cache, end_cache = self._require_loss()
            # undo: loss = (start_loss + end_loss) / 2
            dstart_logits = cross_entropy_backward(0.5 * loss_scale, start_cache)
            dend_logits = cross_entropy_backward(0.5 * loss_scale, end_cache)
        self._loss_cache = None
        if dstart_logits is None and dend_logits is None:   # only hidden states enter the loss
            return self.bert.backward(dhidden_states=dhidden_states)
        xp = get_xp(dstart_logits if dstart_logits is not None else dend_logits)
        if dstart_logits is None:
            dstart_logits = xp.zeros_like(dend_logits)
        if dend_logits is None:
            dend_logits = xp.zeros_like(dstart_logits)
        # undo: start_logits, end_logits = logits[..., 0], logits[..., 1]
        dlogits = xp.stack((dstart_logits, dend_logits), axis=-1)      # (B, T, 2)
        # undo: logits = x W_qa + b_qa
        dx = self.qa_outputs.backward(dlogits)
        # undo: x = bert(input_ids).last_hidden_state
        return self.bert.backward(dx, dhidden_states=dhidden_states)
