"""GPT-2, exactly: learned positions, pre-LN blocks, gelu_new, LM head tied to wte.

    h_0 = wte[ids] + wpe[positions]                        (B, T, C)
    h_l = h_{l-1} + attn(ln_1(h_{l-1}))                     for each block l
        then h_l = h_l + mlp(ln_2(h_l))
    logits = ln_f(h_L) @ wte^T                             (B, T, V)

Parameter names are `transformers`' GPT2LMHeadModel names (`transformer.h.0.attn.c_attn.weight`,
...), and every weight is (in, out) as in GPT-2's Conv1D, so checkpoints load untransposed.
"""
import dataclasses
import math
import os
from dataclasses import dataclass

from ..backend import get_xp, host_rng, new_dropout_rng, resolve_dtype
from ..io import WEIGHTS_NAME, load_safetensors, read_config, resolve_folder, save_pretrained_folder
from ..layers import (CausalSelfAttention, Dropout, Embedding, FeedForward, LayerNorm, Module,
                      PreLNBlock)
from ..ops.losses import cross_entropy_backward, cross_entropy_forward
from ..ops import get_activation, linear_backward, linear_forward, padding_mask
from .checks import (as_embeds, as_ids, as_mask, check_config, hidden_grads as _hidden_grads,
                     plus as _plus, require_config, same_shape)
from .base import PreTrainedModel
from .output import ModelOutput


@dataclass
class GPTConfig:
    """GPT-2 hyper-parameters, under `transformers`' GPT2Config names."""
    vocab_size: int = 50257            # V: tokens in the vocabulary
    n_positions: int = 1024            # longest sequence (learned position table size)
    n_embd: int = 768                  # C: model width
    n_layer: int = 12                  # L: number of blocks
    n_head: int = 12                   # H: attention heads (C must divide by H)
    n_inner: int = None                # F: feed-forward width (None: 4 C)
    activation_function: str = "gelu_new"  # GPT-2's tanh-approximated GELU
    resid_pdrop: float = 0.1           # dropout on each block's residual branches
    embd_pdrop: float = 0.1            # dropout on the input embeddings
    attn_pdrop: float = 0.1            # dropout on the attention probabilities
    layer_norm_epsilon: float = 1e-5   # LayerNorm eps
    initializer_range: float = 0.02    # std of the normal initialisation
    bos_token_id: int = 50256          # <|endoftext|> (None when outside a small vocabulary)
    eos_token_id: int = 50256
    tie_word_embeddings: bool = True   # the LM head reuses wte (always, in minilm)
    seed: int = 0                      # minilm only: initialisation and dropout seed

    def __post_init__(self):
        # types and ranges, each error naming the field (a config.json may hold "8" for 8)
        check_config(self, positive_ints=("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"),
                     optional_positive_ints=("n_inner",), optional_ints=("bos_token_id", "eos_token_id"),
                     ints=("seed",), probabilities=("resid_pdrop", "embd_pdrop", "attn_pdrop"),
                     positive_floats=("layer_norm_epsilon",), nonnegative_floats=("initializer_range",),
                     bools=("tie_word_embeddings",))
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not isinstance(self.activation_function, str):
            raise TypeError(f"GPTConfig.activation_function must be a name such as 'gelu_new', "
                            f"got {self.activation_function!r}")
        try:
            get_activation(self.activation_function)
        except ValueError as e:                             # lists the known names
            raise ValueError(f"GPTConfig.activation_function: {e}") from None
        if self.seed < 0:
            raise ValueError(f"GPTConfig.seed must be >= 0, got {self.seed}")
        if not self.tie_word_embeddings:
            raise ValueError("minilm's GPT always ties the LM head to wte (tie_word_embeddings=True)")

    def to_dict(self):
        """The config.json that `transformers` reads (GPT2Config names plus model_type)."""
        d = dataclasses.asdict(self)
        d.update(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_ctx=self.n_positions)
        for key in ("bos_token_id", "eos_token_id"):        # GPT-2's 50256 means nothing in a tiny vocabulary
            if d[key] is not None and not 0 <= d[key] < self.vocab_size:
                d[key] = None
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def GPTBlock(cfg, dtype, rng, dropout_rng):                 # noqa: N802 (a block, built)
    """GPT-2's pre-LN block: h = x + attn(ln_1(x)); out = h + mlp_dropout(mlp(ln_2(h)))
    (the attention's output dropout is its own `resid_dropout`)."""
    C = cfg.n_embd
    proj_std = cfg.initializer_range / math.sqrt(2 * cfg.n_layer)   # GPT-2's scaled residual init
    return PreLNBlock([
        ("ln_1", "attn_norm", LayerNorm(C, cfg.layer_norm_epsilon, dtype)),
        ("attn", "attn", CausalSelfAttention(C, cfg.n_head, cfg.attn_pdrop, cfg.resid_pdrop, dtype, rng,
                                             cfg.initializer_range, proj_std, dropout_rng)),
        ("ln_2", "ffn_norm", LayerNorm(C, cfg.layer_norm_epsilon, dtype)),
        ("mlp", "ffn", FeedForward(C, cfg.n_inner or 4 * C, cfg.activation_function, dtype, rng,
                                   cfg.initializer_range, proj_std, names=("c_fc", "c_proj"))),
        ("mlp_dropout", "ffn_dropout", Dropout(cfg.resid_pdrop, dropout_rng))])


class GPTBackbone(Module):
    """`transformer.*` in Hugging Face's GPT2LMHeadModel: embeddings, blocks, final LayerNorm."""

    def __init__(self, cfg, dtype, rng, dropout_rng):
        self.wte = Embedding(cfg.vocab_size, cfg.n_embd, dtype, rng, cfg.initializer_range)
        self.wpe = Embedding(cfg.n_positions, cfg.n_embd, dtype, rng, cfg.initializer_range)
        self.drop = Dropout(cfg.embd_pdrop, dropout_rng)
        self.h = [GPTBlock(cfg, dtype, rng, dropout_rng) for _ in range(cfg.n_layer)]
        self.ln_f = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, dtype)

    def named_children(self):
        return ([("wte", self.wte), ("wpe", self.wpe), ("drop", self.drop)]
                + [(f"h.{i}", block) for i, block in enumerate(self.h)]
                + [("ln_f", self.ln_f)])


class GPT(PreTrainedModel):
    """GPT-2 language model (`GPT2LMHeadModel`) with hand-written backward.

        out = model(input_ids, attention_mask=None, labels=None)   # out.logits, out.loss
        model.backward()                                           # grads of out.loss
    """

    def __init__(self, config, dtype="float32"):
        require_config("GPT", config, GPTConfig)
        self.config = config
        self.dtype = resolve_dtype(dtype)
        rng = host_rng(config.seed)                 # initialisation (host, backend-independent)
        self._dropout_gen = new_dropout_rng(config.seed + 1)
        dropout_rng = self._dropout_gen             # the Generator itself: layers draw from it
        self.transformer = GPTBackbone(config, self.dtype, rng, dropout_rng)
        self._loss_cache = None
        self._head_cache = None

    def named_children(self):
        return [("transformer", self.transformer)]

    # -- the forward and backward passes -------------------------------------------------
    def __call__(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                 output_attentions=False, output_hidden_states=False):
        return self.forward(input_ids, attention_mask=attention_mask, labels=labels,
                            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states)

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None,
                output_attentions=False, output_hidden_states=False):
        """input_ids: (B, T) ints; attention_mask: (B, T) 1/0 (0 = padding) or None;
        labels: (B, T) ints or -100 (Hugging Face semantics: shifted inside, so position t
        predicts labels[t + 1]); inputs_embeds: (B, T, C) in place of wte[input_ids].
        ->  ModelOutput(loss, logits (B, T, V), attentions, hidden_states)

        The loss is the mean over labels that are not -100; when all are -100 it is 0.0 and
        backward gives zero gradients (PyTorch's mean over no terms gives NaN).
        With output_attentions: `attentions`, L arrays (B, H, T, T) of softmax probabilities
        (before attention dropout). With output_hidden_states: `hidden_states`, L + 1 arrays
        (B, T, C), as transformers' GPT2Model: the input of each block (the embeddings, then
        each block's output) and, last, the output of ln_f."""
        cfg = self.config
        tr = self.transformer
        ids, embeds = self._token_inputs(input_ids, inputs_embeds)
        B, T = embeds.shape[:2] if ids is None else ids.shape
        key_mask = None
        if attention_mask is not None:
            like = ids if ids is not None else embeds[..., 0]    # (B, T), for the shape checks
            am = as_mask("attention_mask", attention_mask, like)    # 0/1, bool or float 0./1.
            key_mask = padding_mask(am)                          # (B, 1, 1, T)

        # embeddings: x = wte[ids] + wpe[positions], positions 0..T-1 shared by every row
        tok = tr.wte.forward(ids) if ids is not None else embeds            # (B, T, C)
        x = tok + tr.wpe.forward(get_xp(tok).arange(T)[None, :])           # (B, T, C)
        self._embeds_given = ids is None
        x = tr.drop.forward(x)
        hidden_states = []
        # blocks
        for block in tr.h:
            hidden_states.append(x)
            x = block.forward(x, key_mask=key_mask)
        h = tr.ln_f.forward(x)                                   # (B, T, C)
        hidden_states.append(h)
        self._hidden_shape = h.shape
        # LM head, tied: logits = h wte^T
        logits, self._head_cache = linear_forward(h, tr.wte.weight.data.T)   # (B, T, V)

        loss, self._loss_cache = None, None
        if labels is not None:
            lab = as_ids("labels", labels, cfg.vocab_size, allow_ignore=True)
            same_shape("labels", lab, "input_ids", ids if ids is not None else embeds[..., 0])
            V = cfg.vocab_size
            shift_logits = logits[:, :-1].reshape(-1, V)        # (B*(T-1), V)
            loss, ce_cache = cross_entropy_forward(shift_logits, lab[:, 1:].reshape(-1))
            self._loss_cache = (ce_cache, (B, T, V))
        return ModelOutput(
            loss=loss, logits=logits,
            attentions=tuple(b.attn.attention_probs for b in tr.h) if output_attentions else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None)

    def _token_inputs(self, input_ids, inputs_embeds):
        """Checked (ids (B, T) or None, inputs_embeds (B, T, C) or None): exactly one given."""
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            ids, embeds = as_ids("input_ids", input_ids, cfg.vocab_size), None
            T = ids.shape[1]
        else:
            ids, embeds = None, as_embeds("inputs_embeds", inputs_embeds, cfg.n_embd, self.dtype)
            T = embeds.shape[1]
        if T == 0:
            raise ValueError("input_ids is empty: need at least one token per sequence")
        if T > cfg.n_positions:
            raise ValueError(f"sequence length {T} exceeds the model's context n_positions={cfg.n_positions}")
        return ids, embeds

    def transformer_blocks(self):
        return self.transformer.h                          # the list itself: entries can be swapped

    def backward(self, dlogits=None, dhidden_states=None, loss_scale=1.0):
        """Accumulate d(loss)/d(param) into every parameter's .grad.

        With no argument, the loss is the one from the last forward (which needs labels);
        pass `dlogits` (B, T, V) to backpropagate any other loss built on the logits.
        `dhidden_states`: a tuple aligned with out.hidden_states (None entries skipped) of
        extra upstream gradients (B, T, C), added to the loss's. Returns d loss / d
        inputs_embeds (B, T, C) after a forward on inputs_embeds, else None.
        `loss_scale`: the loss's gradient is multiplied by it (float16 loss scaling, see
        minilm/training/precision.py); `dlogits` and `dhidden_states` are used as given.
        The gradients flow in the weights' dtype (float16 in a mixed-precision step).
        """
        tr = self.transformer
        if dlogits is None and dhidden_states is None and self._loss_cache is None:
            raise RuntimeError("backward() needs a loss: call model(input_ids, labels=...) first "
                               "(or pass dlogits or dhidden_states)")
        if self._head_cache is None:
            raise RuntimeError("GPT.backward called before forward")
        dhs = _hidden_grads(dhidden_states, len(tr.h) + 1)
        if dlogits is None and self._loss_cache is not None:
            ce_cache, (B, T, V) = self._loss_cache
            xp = get_xp(ce_cache[0])
            dlogits = xp.zeros((B, T, V), dtype=tr.wte.weight.data.dtype)
            dlogits[:, :-1] = cross_entropy_backward(loss_scale, ce_cache).reshape(B, T - 1, V)
        self._loss_cache = None
        if dlogits is not None:
            # undo: logits = h wte^T  (the tied head's contribution to wte's gradient)
            dh, dWt, _ = linear_backward(dlogits, self._head_cache)   # dWt: (C, V)
            tr.wte.weight.grad += dWt.T
        else:                                                    # only hidden states enter the loss
            dh = get_xp(tr.wte.weight.data).zeros(self._hidden_shape, dtype=tr.wte.weight.data.dtype)
        self._head_cache = None
        # undo: h = ln_f(x)   (h is hidden_states[L])
        dx = tr.ln_f.backward(_plus(dh, dhs[-1]))
        for i in reversed(range(len(tr.h))):
            # undo: x_{i+1} = block_i(x_i)   (x_i is hidden_states[i])
            dx = _plus(tr.h[i].backward(dx), dhs[i])
        # undo: x = dropout(wte[ids] + wpe[pos])  (the embedding's own contribution to wte)
        dx = tr.drop.backward(dx)                               # (B, T, C)
        tr.wpe.backward(dx)                                     # positions: (1, T) ids, (B, T, C) gradient
        if self._embeds_given:
            return dx                                           # d loss / d inputs_embeds
        tr.wte.backward(dx)
        return None

    def prune_heads(self, heads):
        """Remove attention heads {layer: [head indices]} for good (as transformers'
        `prune_heads`): their columns of c_attn and rows of c_proj go."""
        for layer, hs in heads.items():
            self.transformer.h[layer].attn.prune_heads(hs)

    # -- inference with a KV cache ---------------------------------------------------------
    def init_kv_cache(self, batch_size, max_len):
        """One (K, V) pair of (B, H, max_len, D) buffers per block."""
        cfg = self.config
        xp = get_xp(self.transformer.wte.weight.data)
        D = cfg.n_embd // cfg.n_head
        shape = (batch_size, cfg.n_head, max_len, D)
        return [(xp.zeros(shape, self.dtype), xp.zeros(shape, self.dtype)) for _ in range(cfg.n_layer)]

    def forward_cached(self, ids, kv_cache, pos):
        """Logits of the last position after feeding ids (B, t) at positions pos..pos+t-1."""
        tr = self.transformer
        xp = get_xp(ids)
        t = ids.shape[1]
        if pos + t > self.config.n_positions:
            raise ValueError(f"position {pos + t} exceeds n_positions={self.config.n_positions}")
        x = tr.wte.weight.data[ids] + tr.wpe.weight.data[xp.arange(pos, pos + t)][None]
        for block, (k, v) in zip(tr.h, kv_cache):
            x = block.forward_cached(x, k, v, pos)
        h = tr.ln_f.forward(x[:, -1:])                           # only the last position is needed
        self.clear_caches()
        return (h @ tr.wte.weight.data.T)[:, 0]                  # (B, V)

    def get_input_embeddings(self):
        """The token-embedding layer (an Embedding), as transformers' get_input_embeddings()."""
        return self.transformer.wte

    def generate(self, input_ids, max_new_tokens, do_sample=False, temperature=1.0, top_k=None,
                 top_p=None, use_cache=True, seed=None, eos_token_id=None, crop=False):
        """Continue each prompt by `max_new_tokens` tokens; see `minilm.generate.generate`."""
        from ..inference.generate import generate
        return generate(self, input_ids, max_new_tokens, do_sample=do_sample, temperature=temperature,
                        top_k=top_k, top_p=top_p, use_cache=use_cache, seed=seed,
                        eos_token_id=eos_token_id, crop=crop)

    # -- Hugging Face checkpoints --------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder, dtype="float32"):
        """Load a Hugging Face GPT-2 folder (config.json + model.safetensors).

        Like `transformers`, the loaded model is in eval mode (dropout off): call
        `.train()` before fine-tuning it."""
        folder = resolve_folder(folder)
        cfg = read_config(folder, expected_model_types=("gpt2",))
        config = GPTConfig.from_dict(cfg)
        model = cls(config, dtype=dtype)
        tensors = load_safetensors(os.path.join(str(folder), WEIGHTS_NAME))
        state = {}
        for k, v in tensors.items():
            name = k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k
            if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
                continue                                         # causal-mask buffers; the tied head
            state[name] = v
        model.load_state_dict(state, strict=True)
        return model.eval()

    def save_pretrained(self, folder):
        """Write config.json + model.safetensors that `transformers` reads back unchanged.

        Crash-safe (`minilm.io.atomic_folder`): the folder holds the old or the new
        checkpoint, whole, at every instant; each tensor carries its sha256."""
        return save_pretrained_folder(folder, self.config.to_dict(), self.state_dict())
