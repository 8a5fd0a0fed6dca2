"""The original Transformer (Vaswani et al. 2017, "Attention Is All You Need"): an encoder
reads the source, a decoder writes the target while attending over the encoder's output.

    x_0 = E_src[src] * sqrt(C) + PE[0:S]                   (B, S, C)  sinusoidal positions
    x_l = EncoderLayer(x_{l-1}, src padding mask)           memory = x_L    (B, S, C)
    y_0 = E_tgt[tgt] * sqrt(C) + PE[0:T]                   (B, T, C)
    y_l = DecoderLayer(y_{l-1}, memory, causal & tgt padding mask, src padding mask)
    logits = y_L E_tgt^T                                    (B, T, V)  output tied to E_tgt

Each layer is a stack of residual sub-layers, `LayerNorm(x + Dropout(sublayer(x)))` in the
paper (post-LN, norm_first=False), or `x + Dropout(sublayer(LayerNorm(x)))` with
norm_first=True (pre-LN, which trains without warm-up and needs a final LayerNorm after
each stack). The feed-forward sub-layer is ReLU(x W_1 + b_1) W_2 + b_2.

Config names are `torch.nn.Transformer`'s (d_model, nhead, num_encoder_layers, ...), and so
are the layers' (self_attn, multihead_attn, norm1..3, linear1/linear2); the call follows
Hugging Face's encoder-decoders: `model(input_ids, attention_mask, decoder_input_ids,
labels)`. Weights are (in, out): the code reads `x @ W + b`.
"""
import dataclasses
import math
import os
from dataclasses import dataclass

from ..backend import get_xp, host_rng, new_dropout_rng, resolve_dtype
from ..io import WEIGHTS_NAME, load_safetensors, read_config, resolve_folder, save_pretrained_folder
from ..layers import (Dropout, Embedding, FeedForward, LayerNorm, Module, MultiHeadAttention,
                      PostLNBlock, PreLNBlock)
from ..ops.losses import IGNORE_INDEX, cross_entropy_backward, cross_entropy_forward
from ..ops import linear_backward, linear_forward, padding_mask
from .checks import (as_embeds, as_ids, as_mask, check_config, hidden_grads, plus, require_config,
                     same_shape)
from .base import PreTrainedModel
from .output import ModelOutput

MODEL_TYPE = "minilm-seq2seq"
ATTN_NAMES = ("q_proj", "k_proj", "v_proj", "out_proj")     # the four projections' names


@dataclass
class TransformerConfig:
    """Hyper-parameters of the encoder-decoder; defaults are the paper's base model."""
    src_vocab_size: int = 37000        # V_src: source vocabulary
    tgt_vocab_size: int = 37000        # V: target vocabulary (the output layer's width)
    d_model: int = 512                 # C: model width
    nhead: int = 8                     # H: attention heads (C must divide by H)
    num_encoder_layers: int = 6        # encoder layers
    num_decoder_layers: int = 6        # decoder layers
    dim_feedforward: int = 2048        # F: inner width of the ReLU feed-forward network
    dropout: float = 0.1               # on embeddings, attention probabilities, sub-layer outputs
    max_position_embeddings: int = 512  # longest source or target (rows of the sinusoid table)
    layer_norm_eps: float = 1e-5       # LayerNorm eps
    norm_first: bool = False           # False: post-LN as in the paper; True: pre-LN
    share_embeddings: bool = False     # one table for source and target (needs equal vocabularies)
    label_smoothing: float = 0.1       # eps_ls of the loss (the paper's 0.1)
    pad_token_id: int = 0              # padding, in both vocabularies
    bos_token_id: int = 1              # starts every decoder input (HF's decoder_start_token_id)
    eos_token_id: int = 2              # ends every target
    seed: int = 0                      # minilm only: initialisation and dropout seed

    def __post_init__(self):
        # types and ranges, each error naming the field (a config.json may hold "8" for 8)
        check_config(self, positive_ints=("src_vocab_size", "tgt_vocab_size", "d_model", "nhead",
                                          "num_encoder_layers", "num_decoder_layers", "dim_feedforward",
                                          "max_position_embeddings"),
                     ints=("pad_token_id", "bos_token_id", "eos_token_id", "seed"),
                     probabilities=("dropout", "label_smoothing"), positive_floats=("layer_norm_eps",),
                     bools=("norm_first", "share_embeddings"))
        if self.seed < 0:
            raise ValueError(f"TransformerConfig.seed must be >= 0, got {self.seed}")
        if self.d_model % self.nhead:
            raise ValueError(f"TransformerConfig.d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError("share_embeddings needs src_vocab_size == tgt_vocab_size, got "
                             f"{self.src_vocab_size} and {self.tgt_vocab_size}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if not 0 <= getattr(self, name) < self.tgt_vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} is outside the target vocabulary "
                                 f"[0, {self.tgt_vocab_size})")
        if not 0 <= self.pad_token_id < self.src_vocab_size:
            raise ValueError(f"pad_token_id={self.pad_token_id} is outside the source vocabulary "
                             f"[0, {self.src_vocab_size})")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d.update(model_type=MODEL_TYPE, architectures=["Seq2SeqTransformer"],
                 decoder_start_token_id=self.bos_token_id, activation="relu")
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def sinusoidal_positions(xp, n_positions, C, dtype):
    """(n_positions, C) table of the paper's section 3.5, fixed (not learned):

        PE[pos, 2i]   = sin(pos / 10000^(2i / C))
        PE[pos, 2i+1] = cos(pos / 10000^(2i / C))
    Each pair of channels is a sinusoid of its own wavelength (2 pi ... 10000 * 2 pi), so
    PE[pos + k] is a fixed linear function (a rotation per pair) of PE[pos].
    """
    pos = xp.arange(n_positions, dtype=xp.float64)[:, None]                # (P, 1)
    freq = xp.exp(xp.arange(0, C, 2, dtype=xp.float64) * (-math.log(10000.0) / C))  # (ceil(C/2),)
    angle = pos * freq                                                     # (P, ceil(C/2))
    pe = xp.zeros((n_positions, C), dtype=xp.float64)                      # (P, C)
    pe[:, 0::2] = xp.sin(angle)
    pe[:, 1::2] = xp.cos(angle[:, : C // 2])                               # odd C: one sin more
    return pe.astype(dtype)


def shift_tokens_right(labels, pad_token_id, decoder_start_token_id):
    """Teacher forcing: the decoder reads the target shifted right behind a start token.

    labels (B, T) -> decoder_input_ids (B, T), e.g. [a, b, c, EOS] -> [BOS, a, b, c];
    -100 (ignored label positions) become padding.
    """
    xp = get_xp(labels)
    out = xp.full(labels.shape, pad_token_id, dtype=labels.dtype)         # (B, T)
    out[:, 0] = decoder_start_token_id
    out[:, 1:] = labels[:, :-1]
    out[out == IGNORE_INDEX] = pad_token_id
    return out


def xavier_std(n_in, n_out):
    """Glorot/Xavier normal std, sqrt(2 / (fan_in + fan_out)): the usual Transformer init."""
    return math.sqrt(2.0 / (n_in + n_out))


def _block(cfg, children):
    """A pre-LN (norm_first) or post-LN block of (name, role, module) children."""
    return (PreLNBlock if cfg.norm_first else PostLNBlock)(children)


def EncoderLayer(cfg, dtype, rng, dropout_rng):            # noqa: N802 (a block, built)
    """Self-attention over the source, then the feed-forward network.

    post-LN (paper):  h = norm1(x + dropout1(self_attn(x)));   out = norm2(h + dropout2(ffn(h)))
    pre-LN:           h = x + dropout1(self_attn(norm1(x)));   out = h + dropout2(ffn(norm2(h)))
    Called as layer.forward(x, key_mask=src_mask): (B, S, C) -> (B, S, C).
    """
    C, F = cfg.d_model, cfg.dim_feedforward
    return _block(cfg, [
        ("self_attn", "attn", MultiHeadAttention(C, cfg.nhead, cfg.dropout, dtype, rng, xavier_std(C, C),
                                                 ATTN_NAMES, dropout_rng)),
        ("dropout1", "attn_dropout", Dropout(cfg.dropout, dropout_rng)),
        ("norm1", "attn_norm", LayerNorm(C, cfg.layer_norm_eps, dtype)),
        ("ffn", "ffn", FeedForward(C, F, "relu", dtype, rng, xavier_std(C, F), names=("linear1", "linear2"))),
        ("dropout2", "ffn_dropout", Dropout(cfg.dropout, dropout_rng)),
        ("norm2", "ffn_norm", LayerNorm(C, cfg.layer_norm_eps, dtype))])


def DecoderLayer(cfg, dtype, rng, dropout_rng):            # noqa: N802 (a block, built)
    """Masked self-attention over the target so far, cross-attention over the encoder
    output ("memory"), then the feed-forward network.

    post-LN (paper):  h1  = norm1(y + dropout1(self_attn(y)))            causal + target padding
                      h2  = norm2(h1 + dropout2(multihead_attn(h1, memory)))   source padding
                      out = norm3(h2 + dropout3(ffn(h2)))
    pre-LN:           h1  = y + dropout1(self_attn(norm1(y)))
                      h2  = h1 + dropout2(multihead_attn(norm2(h1), memory))
                      out = h2 + dropout3(ffn(norm3(h2)))
    Called as layer.forward(y, memory, key_mask=tgt_mask, memory_mask=src_mask) -> (B, T, C);
    backward(dout) -> (dy, dmemory).
    """
    C, F = cfg.d_model, cfg.dim_feedforward
    return _block(cfg, [
        ("self_attn", "attn", MultiHeadAttention(C, cfg.nhead, cfg.dropout, dtype, rng, xavier_std(C, C),
                                                 ATTN_NAMES, dropout_rng, causal=True)),
        ("dropout1", "attn_dropout", Dropout(cfg.dropout, dropout_rng)),
        ("norm1", "attn_norm", LayerNorm(C, cfg.layer_norm_eps, dtype)),
        ("multihead_attn", "cross", MultiHeadAttention(C, cfg.nhead, cfg.dropout, dtype, rng,
                                                       xavier_std(C, C), ATTN_NAMES, dropout_rng)),
        ("dropout2", "cross_dropout", Dropout(cfg.dropout, dropout_rng)),
        ("norm2", "cross_norm", LayerNorm(C, cfg.layer_norm_eps, dtype)),
        ("ffn", "ffn", FeedForward(C, F, "relu", dtype, rng, xavier_std(C, F), names=("linear1", "linear2"))),
        ("dropout3", "ffn_dropout", Dropout(cfg.dropout, dropout_rng)),
        ("norm3", "ffn_norm", LayerNorm(C, cfg.layer_norm_eps, dtype))])


class TransformerEncoder(Module):
    """Token embeddings * sqrt(C) + sinusoidal positions, dropout, the layers, and (pre-LN
    only) a final LayerNorm."""

    def __init__(self, cfg, dtype, rng, dropout_rng, positions):
        C = cfg.d_model
        self.scale = math.sqrt(C)
        self.positions = positions                               # (P, C) fixed, not a Parameter
        # std C^-1/2, so that E[ids] * sqrt(C) has unit scale and the tied output starts small
        self.embed_tokens = Embedding(cfg.src_vocab_size, C, dtype, rng, std=C ** -0.5)
        self.dropout = Dropout(cfg.dropout, dropout_rng)
        self.layers = [EncoderLayer(cfg, dtype, rng, dropout_rng) for _ in range(cfg.num_encoder_layers)]
        self.norm = LayerNorm(C, cfg.layer_norm_eps, dtype) if cfg.norm_first else None

    def named_children(self):
        return ([("embed_tokens", self.embed_tokens), ("dropout", self.dropout)]
                + [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]
                + ([("norm", self.norm)] if self.norm is not None else []))

    def forward(self, src, src_mask=None, inputs_embeds=None):
        """src: (B, S) ids, src_mask: (B, 1, 1, S) or None; inputs_embeds: (B, S, C) in place
        of E[src] * sqrt(C) (src is then None)
        -> (memory (B, S, C), hidden_states: L + 1 x (B, S, C), each layer's input, and last
        the memory)"""
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens.forward(src) * self.scale           # (B, S, C)
        self.cache = (src is None,)
        pe = self.positions[:inputs_embeds.shape[1]]
        x = self.dropout.forward(inputs_embeds + pe.astype(inputs_embeds.dtype, copy=False))
        hidden_states = []
        for layer in self.layers:
            hidden_states.append(x)
            x = layer.forward(x, key_mask=src_mask)
        memory = self.norm.forward(x) if self.norm is not None else x
        return memory, hidden_states + [memory]

    def backward(self, dmemory, dhidden_states):
        """dmemory (B, S, C), dhidden_states: L + 1 extra gradients or None -> d loss /
        d inputs_embeds after a forward on inputs_embeds, else None (ids)"""
        (embeds_given,) = self._check_cache()
        dx = plus(dmemory, dhidden_states[-1])
        dx = self.norm.backward(dx) if self.norm is not None else dx
        for i in reversed(range(len(self.layers))):
            dx = plus(self.layers[i].backward(dx), dhidden_states[i])
        # undo: x = dropout(E[src] * sqrt(C) + PE)    (PE is fixed: no gradient)
        dx = self.dropout.backward(dx)
        if embeds_given:
            return dx
        self.embed_tokens.backward(dx * self.scale)
        return None


class TransformerDecoder(Module):
    """Target embeddings * sqrt(C) + sinusoidal positions, dropout, the layers, and (pre-LN
    only) a final LayerNorm. The output projection (tied to embed_tokens) is the model's."""

    def __init__(self, cfg, dtype, rng, dropout_rng, positions, embed_tokens=None):
        C = cfg.d_model
        self.scale = math.sqrt(C)
        self.positions = positions
        self.embed_tokens = Embedding(cfg.tgt_vocab_size, C, dtype, rng, std=C ** -0.5)
        if embed_tokens is not None:                             # shared with the encoder:
            self.embed_tokens.weight = embed_tokens.weight       # one Parameter, two lookups
        self.dropout = Dropout(cfg.dropout, dropout_rng)
        self.layers = [DecoderLayer(cfg, dtype, rng, dropout_rng) for _ in range(cfg.num_decoder_layers)]
        self.norm = LayerNorm(C, cfg.layer_norm_eps, dtype) if cfg.norm_first else None

    def named_children(self):
        return ([("embed_tokens", self.embed_tokens), ("dropout", self.dropout)]
                + [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]
                + ([("norm", self.norm)] if self.norm is not None else []))

    def forward(self, tgt, memory, tgt_mask=None, src_mask=None):
        """tgt: (B, T) ids, memory: (B, S, C) -> (h (B, T, C), hidden_states: L + 1 x
        (B, T, C), each layer's input, and last h)"""
        T = tgt.shape[1]
        y = self.embed_tokens.forward(tgt) * self.scale                        # (B, T, C)
        y = y + self.positions[:T].astype(y.dtype, copy=False)   # float16 in mixed precision
        y = self.dropout.forward(y)
        hidden_states = []
        for layer in self.layers:
            hidden_states.append(y)
            y = layer.forward(y, memory, key_mask=tgt_mask, memory_mask=src_mask)
        h = self.norm.forward(y) if self.norm is not None else y
        return h, hidden_states + [h]

    def backward(self, dout, dhidden_states):
        """dout: (B, T, C), dhidden_states: L + 1 extra gradients or None -> dmemory (B, S, C),
        summed over the layers (each reads memory)."""
        dy = plus(dout, dhidden_states[-1])
        dy = self.norm.backward(dy) if self.norm is not None else dy
        dmemory = 0.0
        for i in reversed(range(len(self.layers))):
            dy, dm = self.layers[i].backward(dy)
            dy = plus(dy, dhidden_states[i])
            dmemory = dmemory + dm
        # undo: y = dropout(E[tgt] * sqrt(C) + PE)
        dy = self.dropout.backward(dy)
        self.embed_tokens.backward(dy * self.scale)
        return dmemory

    def forward_cached(self, tgt, cache, pos, src_mask):
        """Inference: tgt (N, t) new ids at positions pos .. pos+t-1 -> (N, t, C)."""
        t = tgt.shape[1]
        y = self.embed_tokens.weight.data[tgt] * self.scale + self.positions[pos:pos + t]
        for layer, layer_cache in zip(self.layers, cache):
            y = layer.forward_cached(y, layer_cache["self_k"], layer_cache["self_v"], pos,
                                     layer_cache["memory_k"], layer_cache["memory_v"], src_mask)
        return self.norm.forward(y) if self.norm is not None else y


class Seq2SeqTransformer(PreTrainedModel):
    """The encoder-decoder Transformer with hand-written backward.

        out = model(input_ids, attention_mask, labels=labels)  # out.loss, out.logits (B, T, V)
        model.backward()                                       # grads of out.loss
        model.generate(input_ids, num_beams=4)                 # (B, 1 + n) BOS ... EOS pad
    """

    def __init__(self, config, dtype="float32"):
        require_config("Seq2SeqTransformer", config, TransformerConfig)
        self.config = config
        self.dtype = resolve_dtype(dtype)
        rng = host_rng(config.seed)                 # initialisation (host, backend-independent)
        self._dropout_gen = new_dropout_rng(config.seed + 1)
        dropout_rng = self._dropout_gen             # the Generator itself: layers draw from it
        positions = sinusoidal_positions(get_xp(), config.max_position_embeddings, config.d_model,
                                         self.dtype)
        self.encoder = TransformerEncoder(config, self.dtype, rng, dropout_rng, positions)
        shared = self.encoder.embed_tokens if config.share_embeddings else None
        self.decoder = TransformerDecoder(config, self.dtype, rng, dropout_rng, positions, shared)
        self._loss_cache = None
        self._head_cache = None

    def transformer_blocks(self):
        return self.encoder.layers + self.decoder.layers   # a new list: encoder, then decoder

    def named_children(self):
        return [("encoder", self.encoder), ("decoder", self.decoder)]

    # -- input checks -----------------------------------------------------------------------
    def _source(self, input_ids, attention_mask, inputs_embeds=None):
        """Checked source ids (B, S) (or inputs_embeds (B, S, C)) and padding mask (B, 1, 1, S)
        or None."""
        cfg = self.config
        if inputs_embeds is not None:
            if input_ids is not None:
                raise ValueError("pass exactly one of input_ids and inputs_embeds")
            src = as_embeds("inputs_embeds", inputs_embeds, cfg.d_model, self.dtype)[..., 0]
        else:
            src = as_ids("input_ids", input_ids, cfg.src_vocab_size)
        S = src.shape[1]
        if S == 0:
            raise ValueError("input_ids is empty: every source needs at least one token")
        if S > cfg.max_position_embeddings:
            raise ValueError(f"source length {S} exceeds max_position_embeddings="
                             f"{cfg.max_position_embeddings}")
        if attention_mask is None:
            return src, None
        am = as_mask("attention_mask", attention_mask, src)         # 0/1, bool or float 0./1.
        if bool((am.sum(axis=1) == 0).any()):
            raise ValueError("a source is all padding (attention_mask row of zeros): every source "
                             "needs at least one real token")
        return src, padding_mask(am)

    # -- the forward and backward passes -----------------------------------------------------
    def __call__(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                 decoder_attention_mask=None, labels=None, inputs_embeds=None,
                 output_attentions=False, output_hidden_states=False):
        return self.forward(input_ids, attention_mask=attention_mask,
                            decoder_input_ids=decoder_input_ids,
                            decoder_attention_mask=decoder_attention_mask, labels=labels,
                            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states)

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None,
                decoder_attention_mask=None, labels=None, inputs_embeds=None,
                output_attentions=False, output_hidden_states=False):
        """input_ids: (B, S) source ids; attention_mask: (B, S) 1/0 (0 = padding) or None;
        decoder_input_ids: (B, T) or None (then labels shifted right behind BOS);
        decoder_attention_mask: (B, T) or None; labels: (B, T) target ids or -100 (ignored;
        all -100 gives loss 0.0 and zero gradients, where PyTorch's mean gives NaN).
        inputs_embeds: (B, S, C) in place of the scaled source lookup E[input_ids] * sqrt(C).
        -> ModelOutput(loss, logits (B, T, V), encoder_last_hidden_state (B, S, C), and as
           transformers' encoder-decoders: with output_hidden_states encoder_hidden_states
           (L_enc + 1 x (B, S, C)) and decoder_hidden_states (L_dec + 1 x (B, T, C)), each
           layer's input and last the stack's output; with output_attentions
           encoder_attentions, decoder_attentions (B, H, T, T), cross_attentions (B, H, T, S))

        Position t of the decoder predicts labels[t]: the shift happens on the input side.
        """
        cfg = self.config
        src, src_mask = self._source(input_ids, attention_mask, inputs_embeds)
        embeds = None
        if inputs_embeds is not None:
            embeds, src = as_embeds("inputs_embeds", inputs_embeds, cfg.d_model, self.dtype), None
        lab = None
        if labels is not None:
            lab = as_ids("labels", labels, cfg.tgt_vocab_size, allow_ignore=True)
        if decoder_input_ids is None:
            if lab is None:
                raise ValueError("pass decoder_input_ids or labels (to be shifted right behind BOS)")
            tgt = shift_tokens_right(lab, cfg.pad_token_id, cfg.bos_token_id)      # (B, T)
        else:
            tgt = as_ids("decoder_input_ids", decoder_input_ids, cfg.tgt_vocab_size)
            if lab is not None:
                same_shape("labels", lab, "decoder_input_ids", tgt)
        B, T = tgt.shape
        n_src = (src if src is not None else embeds).shape[0]
        if B != n_src:
            raise ValueError(f"batch sizes differ: {n_src} sources, {B} targets")
        if T == 0:
            raise ValueError("the target is empty: labels / decoder_input_ids need at least one token")
        if T > cfg.max_position_embeddings:
            raise ValueError(f"target length {T} exceeds max_position_embeddings="
                             f"{cfg.max_position_embeddings}")
        tgt_mask = None
        if decoder_attention_mask is not None:
            dam = as_mask("decoder_attention_mask", decoder_attention_mask, tgt, "decoder_input_ids")
            tgt_mask = padding_mask(dam)                                         # (B, 1, 1, T)

        # encoder: read the whole source
        memory, enc_states = self.encoder.forward(src, src_mask, embeds)         # (B, S, C)
        # decoder: every target position at once (teacher forcing), causally masked
        h, dec_states = self.decoder.forward(tgt, memory, tgt_mask, src_mask)    # (B, T, C)
        self._hidden_shape = h.shape
        # output projection, tied to the target embedding: logits = h E^T
        E = self.decoder.embed_tokens.weight.data                                 # (V, C)
        logits, self._head_cache = linear_forward(h, E.T)                        # (B, T, V)

        loss, self._loss_cache = None, None
        if lab is not None:
            V = cfg.tgt_vocab_size
            loss, ce_cache = cross_entropy_forward(logits.reshape(-1, V), lab.reshape(-1),
                                                   label_smoothing=cfg.label_smoothing)
            self._loss_cache = (ce_cache, (B, T, V))
        out = ModelOutput(loss=loss, logits=logits, encoder_last_hidden_state=memory)
        if output_hidden_states:
            out.encoder_hidden_states, out.decoder_hidden_states = tuple(enc_states), tuple(dec_states)
        if output_attentions:
            out.encoder_attentions = tuple(l.self_attn.attention_probs for l in self.encoder.layers)
            out.decoder_attentions = tuple(l.self_attn.attention_probs for l in self.decoder.layers)
            out.cross_attentions = tuple(l.multihead_attn.attention_probs for l in self.decoder.layers)
        return out

    def backward(self, dlogits=None, dencoder_hidden_states=None, ddecoder_hidden_states=None,
                 loss_scale=1.0):
        """Accumulate d(loss)/d(param) into every parameter's .grad.

        With no argument, the loss is the last forward's (which needs labels); pass
        `dlogits` (B, T, V) to backpropagate any other loss built on the logits.
        `dencoder_hidden_states` / `ddecoder_hidden_states`: tuples aligned with
        out.encoder_hidden_states / out.decoder_hidden_states (None entries skipped) of extra
        upstream gradients. `loss_scale`: the loss's gradient is multiplied by it (float16
        loss scaling, as GPT's). Returns d loss / d inputs_embeds after a forward on
        inputs_embeds.
        """
        extra = dencoder_hidden_states is not None or ddecoder_hidden_states is not None
        if dlogits is None and (self._loss_cache is not None or not extra):
            if self._loss_cache is None:
                raise RuntimeError("backward() needs a loss: call model(input_ids, labels=...) first "
                                   "(or pass dlogits)")
            ce_cache, (B, T, V) = self._loss_cache
            dlogits = cross_entropy_backward(loss_scale, ce_cache).reshape(B, T, V)
        if self._head_cache is None:
            raise RuntimeError("Seq2SeqTransformer.backward called before forward")
        self._loss_cache = None
        if dlogits is not None:
            # undo: logits = h E^T   (the tied output layer's share of E's gradient)
            dh, dEt, _ = linear_backward(dlogits, self._head_cache)              # dEt: (C, V)
            self.decoder.embed_tokens.weight.grad += dEt.T
        else:                                                    # only hidden states enter the loss
            E = self.decoder.embed_tokens.weight.data
            dh = get_xp(E).zeros(self._hidden_shape, E.dtype)   # E's dtype: float16 in mixed precision
        self._head_cache = None
        # undo: h = decoder(tgt, memory)   (memory is read by every decoder layer)
        dmemory = self.decoder.backward(dh, hidden_grads(ddecoder_hidden_states,
                                                         len(self.decoder.layers) + 1))   # (B, S, C)
        # undo: memory = encoder(src)
        return self.encoder.backward(dmemory, hidden_grads(dencoder_hidden_states,
                                                           len(self.encoder.layers) + 1))

    # -- inference ---------------------------------------------------------------------------
    def encode(self, input_ids, attention_mask=None):
        """Checked source -> (memory (B, S, C), src_mask (B, 1, 1, S) or None), no caches kept."""
        src, src_mask = self._source(input_ids, attention_mask)
        memory, _ = self.encoder.forward(src, src_mask)
        self.clear_caches()
        return memory, src_mask

    def decode(self, tgt, memory, src_mask=None):
        """Logits (N, V) of the last position after the whole prefix tgt (N, t): the
        no-cache path, which re-runs every earlier position each step."""
        h, _ = self.decoder.forward(tgt, memory, None, src_mask)                 # (N, t, C)
        self.clear_caches()
        return h[:, -1] @ self.decoder.embed_tokens.weight.data.T                # (N, V)

    def init_decoder_cache(self, memory, max_len):
        """Per decoder layer: self-attention key/value buffers (N, H, max_len, D), filled as
        tokens arrive, and the encoder memory's cross-attention keys/values (N, H, S, D),
        projected once for the whole generation."""
        cfg = self.config
        xp = get_xp(memory)
        N, H = memory.shape[0], cfg.nhead
        shape = (N, H, max_len, cfg.d_model // H)
        cache = []
        for layer in self.decoder.layers:
            memory_k, memory_v = layer.multihead_attn.project_memory(memory)      # (N, H, S, D)
            cache.append({"self_k": xp.zeros(shape, self.dtype), "self_v": xp.zeros(shape, self.dtype),
                          "memory_k": memory_k, "memory_v": memory_v})
        return cache

    def decode_step(self, tgt, cache, pos, src_mask=None):
        """Logits (N, V) of the last of the new ids tgt (N, t) fed at positions pos.., with
        the cache from init_decoder_cache (which this fills)."""
        if pos + tgt.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"position {pos + tgt.shape[1]} exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        h = self.decoder.forward_cached(tgt, cache, pos, src_mask)               # (N, t, C)
        self.clear_caches()
        return h[:, -1] @ self.decoder.embed_tokens.weight.data.T                # (N, V)

    @staticmethod
    def reorder_decoder_cache(cache, index):
        """Beam search: row i of the cache becomes row index[i] (cross-attention keys are
        the same for every beam of one source and stay as they are)."""
        for layer_cache in cache:
            layer_cache["self_k"] = layer_cache["self_k"][index]
            layer_cache["self_v"] = layer_cache["self_v"][index]
        return cache

    def get_input_embeddings(self):
        """The token-embedding layer (an Embedding), as transformers' get_input_embeddings()."""
        return self.encoder.embed_tokens

    def generate(self, input_ids, attention_mask=None, max_new_tokens=None, num_beams=1,
                 length_penalty=1.0, use_cache=True, return_dict_in_generate=False):
        """Translate each source: greedy (num_beams=1) or beam search; see
        `minilm.beam_search.generate_seq2seq`. Returns (B, 1 + n) NumPy ids, BOS first."""
        from ..inference.beam_search import generate_seq2seq
        return generate_seq2seq(self, input_ids, attention_mask=attention_mask,
                                max_new_tokens=max_new_tokens, num_beams=num_beams,
                                length_penalty=length_penalty, use_cache=use_cache,
                                return_dict_in_generate=return_dict_in_generate)

    def score_sequences(self, input_ids, sequences, attention_mask=None, length_penalty=1.0):
        """Length-normalised log-probability of given outputs (as `generate` returns them:
        BOS, tokens, EOS, padding), computed by one teacher-forced forward pass."""
        from ..inference.beam_search import score_sequences
        return score_sequences(self, input_ids, sequences, attention_mask, length_penalty)

    # -- checkpoints -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder, dtype="float32"):
        """Load a folder written by save_pretrained (config.json + model.safetensors)."""
        folder = resolve_folder(folder)
        cfg = read_config(folder, expected_model_types=(MODEL_TYPE,))
        model = cls(TransformerConfig.from_dict(cfg), dtype=dtype)
        tensors = load_safetensors(os.path.join(str(folder), WEIGHTS_NAME))
        model.load_state_dict(tensors, strict=True)
        return model

    def save_pretrained(self, folder):
        """Write config.json (model_type "minilm-seq2seq") + model.safetensors, crash-safe
        (see `minilm.io.atomic_folder`)."""
        return save_pretrained_folder(folder, self.config.to_dict(), self.state_dict())
