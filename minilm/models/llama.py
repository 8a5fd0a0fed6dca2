"""Llama and Qwen3: RMSNorm, rotary positions, grouped-query attention, SwiGLU, written out.

    h_0 = embed_tokens[ids]                                          (B, T, C)
    h_l = layer_l(h_{l-1}, cos, sin)     cos, sin = rope_tables(positions 0..T-1)
    logits = norm(h_L) @ lm_head         (lm_head = embed_tokens^T when tied)   (B, T, V)

Qwen3 is Llama plus an RMSNorm on each query and key head (self_attn.q_norm / k_norm) and an
explicit head_dim that need not be hidden_size / num_attention_heads.

Parameter names are transformers' LlamaForCausalLM / Qwen3ForCausalLM names; transformers
stores nn.Linear weights as (out, in) and minilm's Linear is (in, out), so every matrix but
model.embed_tokens.weight is transposed on load and save.

RoPE tables: transformers computes cos/sin in float32 whatever the model's dtype; minilm
computes them in float64 and casts them to the model's dtype (the fixtures compare against
transformers with its tables computed in float64, and record what the float32 tables change).
"""
import dataclasses
import os
from dataclasses import dataclass

from ..backend import get_xp, host_rng, resolve_dtype
from ..io import WEIGHTS_NAME, load_safetensors, read_config, resolve_folder, save_pretrained_folder
from ..layers import Embedding, LlamaDecoderLayer, Linear, Module, RMSNorm
from ..ops.losses import cross_entropy_backward, cross_entropy_forward
from ..ops import check_gqa_heads, linear_backward, linear_forward, padding_mask, rope_tables
from .base import PreTrainedModel
from .checks import (as_embeds, as_ids, as_mask, check_config, hidden_grads as _hidden_grads,
                     plus as _plus, require_config, same_shape)
from .output import ModelOutput


@dataclass
class LlamaConfig:
    """Llama hyper-parameters, under transformers' LlamaConfig names."""
    vocab_size: int = 32000            # V
    hidden_size: int = 4096            # C: model width
    intermediate_size: int = 11008     # F: SwiGLU width
    num_hidden_layers: int = 32        # L
    num_attention_heads: int = 32      # H: query heads
    num_key_value_heads: int = None    # H_kv: key/value heads (None: H); H must divide by H_kv
    head_dim: int = None               # D (None: C // H)
    max_position_embeddings: int = 2048   # longest sequence
    rms_norm_eps: float = 1e-6         # RMSNorm eps
    rope_theta: float = 10000.0        # RoPE base
    rope_scaling: dict = None          # only None (plain RoPE) is implemented
    tie_word_embeddings: bool = False  # lm_head reuses embed_tokens
    attention_bias: bool = False       # biases on q/k/v/o_proj
    mlp_bias: bool = False             # only False is implemented
    hidden_act: str = "silu"           # only silu is implemented
    initializer_range: float = 0.02    # std of the normal initialisation
    bos_token_id: int = None
    eos_token_id: int = None           # an int, or a list of ints (Llama 3 Instruct)
    pad_token_id: int = None
    seed: int = 0                      # minilm only: initialisation seed

    model_type = "llama"
    architecture = "LlamaForCausalLM"
    qk_norm = False

    def __post_init__(self):
        name = type(self).__name__
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None and isinstance(self.hidden_size, int) and isinstance(self.num_attention_heads, int):
            self.head_dim = self.hidden_size // max(self.num_attention_heads, 1)
        check_config(self, positive_ints=("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                          "num_attention_heads", "num_key_value_heads", "head_dim",
                                          "max_position_embeddings"),
                     optional_ints=("bos_token_id", "pad_token_id")
                     + (() if isinstance(self.eos_token_id, list) else ("eos_token_id",)), ints=("seed",),
                     positive_floats=("rms_norm_eps", "rope_theta"), nonnegative_floats=("initializer_range",),
                     bools=("tie_word_embeddings", "attention_bias", "mlp_bias"))
        if isinstance(self.eos_token_id, list) and not all(type(i) is int for i in self.eos_token_id):
            raise TypeError(f"{name}.eos_token_id must be an int or a list of ints (Llama 3 lists several), "
                            f"got {self.eos_token_id!r}")
        try:
            check_gqa_heads(self.num_attention_heads, self.num_key_value_heads)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        if self.head_dim % 2:
            raise ValueError(f"{name}.head_dim must be even for RoPE (it rotates pairs of channels), "
                             f"got {self.head_dim}")
        if self.rope_scaling is not None:
            raise ValueError(f"{name}.rope_scaling={self.rope_scaling!r}: only plain RoPE (None) is "
                             "implemented; loading it anyway would give wrong logits past short contexts")
        if self.mlp_bias or self.hidden_act != "silu":
            raise ValueError(f"{name}: only mlp_bias=False and hidden_act='silu' are implemented")

    @property
    def n_positions(self):
        """The context length under GPT's name (minilm.generate reads it)."""
        return self.max_position_embeddings

    def to_dict(self):
        """The config.json that transformers reads."""
        d = dataclasses.asdict(self)
        d.update(model_type=self.model_type, architectures=[self.architecture], torch_dtype="float32")
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        rp = d.get("rope_parameters")                     # transformers >= 5 nests rope_theta here
        if isinstance(rp, dict):
            d.setdefault("rope_theta", rp.get("rope_theta", 10000.0))
            if rp.get("rope_type", "default") != "default":
                d.setdefault("rope_scaling", rp)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Qwen3Config(LlamaConfig):
    """Qwen3 hyper-parameters (transformers' Qwen3Config names): Llama plus per-head q/k RMSNorm."""
    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 22016
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int = 128                # explicit: need not be hidden_size // num_attention_heads
    max_position_embeddings: int = 32768
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False

    model_type = "qwen3"
    architecture = "Qwen3ForCausalLM"
    qk_norm = True


class LlamaModel(Module):
    """`model.*`: embed_tokens, layers, norm."""

    def __init__(self, cfg, dtype, rng):
        std = cfg.initializer_range
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.hidden_size, dtype, rng, std)
        self.layers = [LlamaDecoderLayer(cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads,
                                         cfg.num_key_value_heads, cfg.head_dim, cfg.rms_norm_eps,
                                         cfg.attention_bias, cfg.qk_norm, dtype, rng, std)
                       for _ in range(cfg.num_hidden_layers)]
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype)

    def named_children(self):
        return ([("embed_tokens", self.embed_tokens)]
                + [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)] + [("norm", self.norm)])


class LlamaForCausalLM(PreTrainedModel):
    """Llama language model with hand-written backward.

        out = model(input_ids, attention_mask=None, labels=None)   # out.logits, out.loss
        model.backward()                                           # grads of out.loss
    """
    config_class = LlamaConfig

    def __init__(self, config, dtype="float32"):
        require_config(type(self).__name__, config, self.config_class)
        self.config = config
        self.dtype = resolve_dtype(dtype)
        rng = host_rng(config.seed)
        self.model = LlamaModel(config, self.dtype, rng)
        self.lm_head = (None if config.tie_word_embeddings else
                        Linear(config.hidden_size, config.vocab_size, False, self.dtype, rng,
                               config.initializer_range))
        self._loss_cache = self._head_cache = None

    def transformer_blocks(self):
        return self.model.layers                           # the list itself: entries can be swapped

    def named_children(self):
        return [("model", self.model)] + ([("lm_head", self.lm_head)] if self.lm_head is not None else [])

    def _head_weight(self):
        """(C, V): lm_head's weight, or embed_tokens^T when tied."""
        if self.lm_head is None:
            return self.model.embed_tokens.weight.data.T
        return self.lm_head.weight.data

    def _rope(self, positions):
        cfg = self.config
        return rope_tables(positions, cfg.head_dim, cfg.rope_theta, self.dtype)   # (B, T, D) each

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                output_attentions=False, output_hidden_states=False):
        """input_ids: (B, T) ints; attention_mask: (B, T) 1/0 or None; labels: (B, T) ints or
        -100, shifted inside as GPT's; inputs_embeds: (B, T, C) in place of embed_tokens[ids].
        ->  ModelOutput(loss, logits (B, T, V), attentions, hidden_states)

        As GPT's: `attentions` are L arrays (B, H, T, T) of softmax probabilities;
        `hidden_states` L + 1 arrays (B, T, C): each layer's input, then the output of `norm`."""
        cfg, m = self.config, self.model
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            ids, embeds = as_ids("input_ids", input_ids, cfg.vocab_size), None
        else:
            embeds = as_embeds("inputs_embeds", inputs_embeds, cfg.hidden_size, self.dtype)
            ids = None
        self._embeds_given = ids is None
        like = ids if ids is not None else embeds[..., 0]          # (B, T), for the shape checks
        B, T = like.shape
        if T == 0:
            raise ValueError("input_ids is empty: need at least one token per sequence")
        if T > cfg.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings={cfg.max_position_embeddings}")
        key_mask = None
        if attention_mask is not None:
            key_mask = padding_mask(as_mask("attention_mask", attention_mask, like))  # (B, 1, 1, T)
        xp = get_xp(like)
        cos, sin = self._rope(xp.arange(T)[None, :])      # (1, T, D): positions 0..T-1, every row

        x = m.embed_tokens.forward(ids) if ids is not None else embeds   # (B, T, C)
        if cos.dtype != x.dtype:                          # float16 (mixed precision): the tables
            cos, sin = cos.astype(x.dtype), sin.astype(x.dtype)   # rounded, as transformers' Llama
        hidden_states = []
        for layer in m.layers:
            hidden_states.append(x)
            x = layer.forward(x, key_mask=key_mask, rope=(cos, sin))   # (B, T, C)
        h = m.norm.forward(x)                             # (B, T, C)
        hidden_states.append(h)
        self._hidden_shape = h.shape
        if self.lm_head is None:
            logits, self._head_cache = linear_forward(h, self._head_weight())   # (B, T, V)
        else:
            logits, self._head_cache = self.lm_head.forward(h), "lm_head"

        loss, self._loss_cache = None, None
        if labels is not None:
            lab = as_ids("labels", labels, cfg.vocab_size, allow_ignore=True)
            same_shape("labels", lab, "input_ids", like)
            V = cfg.vocab_size
            loss, ce_cache = cross_entropy_forward(logits[:, :-1].reshape(-1, V), lab[:, 1:].reshape(-1))
            self._loss_cache = (ce_cache, (B, T, V))
        return ModelOutput(
            loss=loss, logits=logits,
            attentions=tuple(layer.self_attn.attention_probs for layer in m.layers) if output_attentions else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None)

    def backward(self, dlogits=None, dhidden_states=None, loss_scale=1.0):
        """Accumulate d(loss)/d(param) into every .grad (the last forward's loss, or `dlogits`).

        `dhidden_states`: a tuple aligned with out.hidden_states (None entries skipped) of
        extra upstream gradients (B, T, C), added to the loss's, as GPT's. `loss_scale`: the
        loss's gradient is multiplied by it (float16 loss scaling, as GPT's). Returns d loss /
        d inputs_embeds (B, T, C) after a forward on inputs_embeds, else None."""
        m = self.model
        if dlogits is None and dhidden_states is None and self._loss_cache is None:
            raise RuntimeError("backward() needs a loss: call model(input_ids, labels=...) first "
                               "(or pass dlogits or dhidden_states)")
        if self._head_cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        dhs = _hidden_grads(dhidden_states, len(m.layers) + 1)
        if dlogits is None and self._loss_cache is not None:
            ce_cache, (B, T, V) = self._loss_cache
            dtype = m.embed_tokens.weight.data.dtype      # float16 in a mixed-precision step
            dlogits = get_xp(ce_cache[0]).zeros((B, T, V), dtype=dtype)
            dlogits[:, :-1] = cross_entropy_backward(loss_scale, ce_cache).reshape(B, T - 1, V)
        self._loss_cache = None
        if dlogits is None:                               # only hidden states enter the loss
            dh = get_xp(m.norm.weight.data).zeros(self._hidden_shape, dtype=m.norm.weight.data.dtype)
            if self.lm_head is not None:
                self.lm_head.cache = None                 # its forward's cache, unused
        elif self.lm_head is None:
            # undo: logits = h @ embed_tokens^T  (the tied head's share of embed_tokens' gradient)
            dh, dWt, _ = linear_backward(dlogits, self._head_cache)   # dWt: (C, V)
            m.embed_tokens.weight.grad += dWt.T
        else:
            dh = self.lm_head.backward(dlogits)           # undo: logits = lm_head(h)
        self._head_cache = None
        # undo: h = norm(x)   (h is hidden_states[L])
        dx = m.norm.backward(_plus(dh, dhs[-1]))
        for i in reversed(range(len(m.layers))):
            # undo: x_{i+1} = layer_i(x_i)   (x_i is hidden_states[i])
            dx = _plus(m.layers[i].backward(dx), dhs[i])
        if self._embeds_given:
            return dx                                     # d loss / d inputs_embeds
        m.embed_tokens.backward(dx)                       # undo: x = embed_tokens[ids]
        return None

    # -- inference with a KV cache ---------------------------------------------------------
    def init_kv_cache(self, batch_size, max_len):
        """One (K, V) pair of (B, H_kv, max_len, D) buffers per layer: H_kv heads, not H."""
        cfg = self.config
        xp = get_xp(self.model.embed_tokens.weight.data)
        shape = (batch_size, cfg.num_key_value_heads, max_len, cfg.head_dim)
        return [(xp.zeros(shape, self.dtype), xp.zeros(shape, self.dtype)) for _ in range(cfg.num_hidden_layers)]

    def forward_cached(self, ids, kv_cache, pos):
        """Logits (B, V) of the last position after feeding ids (B, t) at positions pos..pos+t-1
        (the keys are rotated at those positions before they enter the cache)."""
        m = self.model
        xp = get_xp(ids)
        t = ids.shape[1]
        if pos + t > self.config.max_position_embeddings:
            raise ValueError(f"position {pos + t} exceeds max_position_embeddings={self.config.max_position_embeddings}")
        cos, sin = self._rope(xp.arange(pos, pos + t)[None, :])   # (1, t, D)
        x = m.embed_tokens.weight.data[ids]                        # (B, t, C)
        for layer, (k, v) in zip(m.layers, kv_cache):
            x = layer.forward_cached(x, k, v, pos, rope=(cos, sin))
        h = m.norm.forward(x[:, -1:])                              # (B, 1, C)
        self.clear_caches()
        return (h @ self._head_weight())[:, 0]                     # (B, V)

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def generate(self, input_ids, max_new_tokens, do_sample=False, temperature=1.0, top_k=None,
                 top_p=None, use_cache=True, seed=None, eos_token_id=None, crop=False):
        """Continue each prompt by `max_new_tokens` tokens; see `minilm.generate.generate`
        (crop=True with use_cache=False: keep the last max_position_embeddings tokens as context)."""
        from ..inference.generate import generate
        return generate(self, input_ids, max_new_tokens, do_sample=do_sample, temperature=temperature,
                        top_k=top_k, top_p=top_p, use_cache=use_cache, seed=seed, eos_token_id=eos_token_id,
                        crop=crop)

    # -- Hugging Face checkpoints --------------------------------------------------------------
    @staticmethod
    def _transposed(name, array):
        """transformers' nn.Linear (out, in) <-> minilm's (in, out): every matrix but the embedding."""
        return array.T if array.ndim == 2 and name != "model.embed_tokens.weight" else array

    @classmethod
    def from_pretrained(cls, folder, dtype="float32"):
        """Load a transformers folder (config.json + model.safetensors) of this model type."""
        folder = resolve_folder(folder)
        cfg = read_config(folder, expected_model_types=(cls.config_class.model_type,))
        model = cls(cls.config_class.from_dict(cfg), dtype=dtype)
        tensors = load_safetensors(os.path.join(str(folder), WEIGHTS_NAME))
        state = {k: cls._transposed(k, v) for k, v in tensors.items()
                 if not (k == "lm_head.weight" and model.lm_head is None)}   # a tied head may be stored too
        model.load_state_dict(state, strict=True)
        return model.eval()

    def save_pretrained(self, folder):
        """config.json + model.safetensors that transformers reads back (matrices as (out, in))."""
        tensors = {k: self._transposed(k, v).copy() for k, v in self.state_dict().items()}
        return save_pretrained_folder(folder, self.config.to_dict(), tensors)


class Qwen3ForCausalLM(LlamaForCausalLM):
    """Qwen3: LlamaForCausalLM with per-head q/k RMSNorm and an explicit head_dim (Qwen3Config)."""
    config_class = Qwen3Config
