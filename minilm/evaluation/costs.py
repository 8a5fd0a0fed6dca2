"""What a model costs, from its config alone: parameters, FLOPs, activation and optimiser memory.

    from minilm.costs import count_parameters, flops_per_token, activation_memory, training_memory
    count_parameters(GPTConfig())                          # 124_439_808, GPT-2 small
    count_parameters(BertConfig())                         # 109_482_240, BertModel (BERT-base)
    flops_per_token(GPTConfig(), n_ctx=1024)               # forward matmul FLOPs per token
    flops_per_token(GPTConfig(), convention="6N")          # 6 x non-embedding parameters
    training_memory(GPTConfig(), batch_size=8, seq_len=1024)   # bytes: weights, grads, Adam, activations
    kv_cache_memory(LlamaConfig(...), batch_size=1, seq_len=4096, dtype="bfloat16")   # decoding's cache

Every number is a formula written out below, and each formula is checked in
tests/test_costs.py against something that does not use it: GPT-2 small's and BERT-base's
published sizes, `model.num_parameters()` of minilm's own models, `torch.utils.flop_counter`
(FLOPs of `transformers`' models, numbers stored in the test), the arrays minilm's forward
really keeps for backward (`measure_activation_bytes`), and the buffers minilm's AdamW
really allocates.

A GPT-2 config is recognised by `n_embd`, a Llama / Qwen3 config by `num_key_value_heads`
and `rms_norm_eps` (parameters: `decoder_parameters`; FLOPs: `decoder_flops_per_token`;
activations: `decoder_activation_memory`; KV cache: `kv_cache_memory`), a BERT config by
`hidden_size`. Shape letters:
V vocabulary, P positions, C width, L layers, H heads, F feed-forward width, T (= n_ctx)
sequence length, B batch, N = B*T rows.

FLOP conventions (one multiply-add = 2 FLOPs everywhere):

- "exact": every matrix product of the forward pass, 2 m n k each: per layer q/k/v, the
  output projection and the two feed-forward maps, 2 (4 C^2 + 2 C F) per token; attention's
  two products q k^T and P v, 2 T C each, so 4 T C per token (the whole T x T square: minilm,
  like `transformers`, computes every score and masks afterwards); and the LM head 2 C V.
  Element-wise work (softmax, LayerNorm, GELU, biases) is left out. This is exactly what
  `torch.utils.flop_counter.FlopCounterMode` reports for `transformers`' GPT-2 and BERT.
  Training = 3 x forward: the backward of each product x W costs two products of the same
  size (dx = dout W^T and dW = x^T dout).
- "kaplan": Kaplan et al. 2020 ("Scaling Laws for Neural Language Models"), Table 1:
  forward = 2 N + 2 L n_ctx d_attn with N = 2 d_model L (2 d_attn + d_ff) the non-embedding
  parameters (biases, LayerNorms and the LM head left out); training = 3 x forward.
  Its attention term 2 L n_ctx C is half of "exact"'s 4 L T C: Table 1 counts one of the two
  T-by-T products.
- "6N": the rule of thumb, training FLOPs per token = 6 N (2 N forward, 4 N backward),
  N = non-embedding parameters as in Kaplan; attention's T-dependent terms are dropped.
- "chinchilla": Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models"),
  Appendix F: embeddings 2 T V C, attention (q/k/v 6 T C^2, logits 2 T^2 C, softmax
  3 H T^2, P v 2 T^2 C, output 2 T C^2), dense block 4 T C F, final logits 2 T C V, per
  sequence; backward = 2 x forward. Divided by T here to give a per-token figure.
"""
_BERT_HEADS = ("model", "sequence_classification", "token_classification", "question_answering",
               "masked_lm", "pretraining")


# ----------------------------------------------------------------------------------------
# Reading a config
# ----------------------------------------------------------------------------------------

def _is_modern_decoder(config):
    """Llama / Qwen3 configs (minilm's or transformers'): key/value heads and RMSNorm."""
    return hasattr(config, "num_key_value_heads") and hasattr(config, "rms_norm_eps")


def _decoder_shape(config):
    """(V, C, L, H, H_kv, D, F, tied, bias, qk_norm) from a LlamaConfig- or Qwen3Config-like object."""
    C, H = int(config.hidden_size), int(config.num_attention_heads)
    H_kv = int(getattr(config, "num_key_value_heads", None) or H)
    D = int(getattr(config, "head_dim", None) or C // H)
    qk_norm = bool(getattr(config, "qk_norm", getattr(config, "model_type", "") == "qwen3"))
    return (int(config.vocab_size), C, int(config.num_hidden_layers), H, H_kv, D, int(config.intermediate_size),
            bool(getattr(config, "tie_word_embeddings", False)), bool(getattr(config, "attention_bias", False)),
            qk_norm)


def decoder_parameters(config, non_embedding=False):
    """Llama / Qwen3 (LlamaForCausalLM, Qwen3ForCausalLM), biases and norms counted exactly:

        embed_tokens V C  +  L (C H D + 2 C H_kv D + H D C   q, k, v, o
                               [+ H D + 2 H_kv D + C          attention_bias]
                               + 3 C F                         gate, up, down (no biases)
                               + 2 C                           two RMSNorm gains
                               [+ 2 D])                        Qwen3's q_norm, k_norm
        + C (final norm)  + V C (lm_head, when not tied)
    non_embedding=True: L (2 C H D + 2 C H_kv D + 3 C F), the block matrices (Kaplan's N).
    """
    V, C, L, H, H_kv, D, F, tied, bias, qk_norm = _decoder_shape(config)
    matrices = 2 * C * H * D + 2 * C * H_kv * D + 3 * C * F
    if non_embedding:
        return L * matrices
    layer = matrices + (H * D + 2 * H_kv * D + C if bias else 0) + 2 * C + (2 * D if qk_norm else 0)
    return V * C + L * layer + C + (0 if tied else V * C)


def decoder_flops_per_token(config, n_ctx):
    """Forward matmul FLOPs per token ("exact" convention) of a Llama / Qwen3 model:
    L (2 (2 C H D + 2 C H_kv D + 3 C F) + 4 T H D) + 2 C V. Grouped-query attention saves
    in the k/v projections only: q k^T and P v still run over all H query heads."""
    V, C, L, H, H_kv, D, F, tied, bias, qk_norm = _decoder_shape(config)
    T = int(n_ctx)
    return L * (2.0 * (2 * C * H * D + 2 * C * H_kv * D + 3 * C * F) + 4.0 * T * H * D) + 2.0 * C * V


def _shape(config):
    """(kind, V, P, C, L, H, F) from a GPT2Config-like or BertConfig-like object."""
    if _is_modern_decoder(config):
        raise TypeError(f"{type(config).__name__}: a Llama / Qwen3 config; this formula is GPT-2's "
                        "or BERT's (for these configs: count_parameters, flops_per_token(convention="
                        "'exact'), activation_memory, optimizer_memory, training_memory, kv_cache_memory)")
    if hasattr(config, "n_embd"):
        C = int(config.n_embd)
        F = int(getattr(config, "n_inner", None) or 4 * C)
        return ("gpt", int(config.vocab_size), int(config.n_positions), C, int(config.n_layer),
                int(config.n_head), F)
    if hasattr(config, "hidden_size"):
        return ("bert", int(config.vocab_size), int(config.max_position_embeddings),
                int(config.hidden_size), int(config.num_hidden_layers),
                int(config.num_attention_heads), int(config.intermediate_size))
    raise TypeError(f"expected a GPTConfig or BertConfig (or anything with their field names), "
                    f"got {type(config).__name__}")


# ----------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------

def layer_parameters(C, F):
    """One Transformer block (GPT-2's or BERT's: they hold the same tensors).

        attention  q, k, v, output: 4 (C^2 + C)      two LayerNorms: 2 x 2 C
        feed-forward  C F + F + F C + C
        total = 4 C^2 + 2 C F + 9 C + F
    """
    return 4 * C * C + 2 * C * F + 9 * C + F


def count_parameters(config, head=None, num_labels=None, non_embedding=False):
    """Exact parameter count of the model `config` describes.

    GPT: `GPT` / GPT2LMHeadModel (the LM head is tied to wte, so adds nothing):
        V C + P C  +  L (4 C^2 + 2 C F + 9 C + F)  +  2 C
    BERT, head="model" (BertModel, with pooler):
        V C + P C + type_vocab C + 2 C  +  L (4 C^2 + 2 C F + 9 C + F)  +  C^2 + C
    and the task heads of `transformers` (num_labels from the argument or the config):
        sequence_classification   + C num_labels + num_labels
        token_classification      - pooler  + C num_labels + num_labels
        question_answering        - pooler  + C num_labels + num_labels   (num_labels = 2:
                                                                    start and end logits)
        masked_lm                 - pooler  + C^2 + C + 2 C + V   (transform, LayerNorm,
                                                                    decoder bias; weight tied)
        pretraining               + C^2 + C + 2 C + V  +  2 C + 2 (next-sentence head)
    non_embedding=True: Kaplan et al.'s N = L (4 C^2 + 2 C F), the block matrices only
    (no biases, LayerNorms, embeddings or heads), the N of the 6N rule.
    """
    if _is_modern_decoder(config):
        if head not in (None, "lm"):
            raise ValueError(f"a Llama / Qwen3 config has only the LM head (head=None), got head={head!r}")
        return decoder_parameters(config, non_embedding)
    kind, V, P, C, L, H, F = _shape(config)
    if non_embedding:
        return L * (4 * C * C + 2 * C * F)
    blocks = L * layer_parameters(C, F)
    if kind == "gpt":
        if head not in (None, "lm"):
            raise ValueError(f"a GPT config has only the LM head (head=None), got head={head!r}")
        return V * C + P * C + blocks + 2 * C
    head = head or "model"
    if head not in _BERT_HEADS:
        raise ValueError(f"unknown BERT head {head!r}; choose one of {_BERT_HEADS}")
    n_types = int(getattr(config, "type_vocab_size", 2))
    labels = int(num_labels if num_labels is not None else getattr(config, "num_labels", 2))
    embeddings = V * C + P * C + n_types * C + 2 * C
    pooler = C * C + C
    mlm_head = C * C + C + 2 * C + V
    extra = {"model": pooler,
             "sequence_classification": pooler + C * labels + labels,
             "token_classification": C * labels + labels,
             "question_answering": C * labels + labels,
             "masked_lm": mlm_head,
             "pretraining": pooler + mlm_head + 2 * C + 2}[head]
    return embeddings + blocks + extra


# ----------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------

def flops_per_token(config, n_ctx=None, convention="exact", training=False, head=None,
                    num_labels=None):
    """FLOPs per token for one forward pass (training=True: forward + backward).

    n_ctx: sequence length T (default: the config's full context). convention: "exact",
    "kaplan", "6N" or "chinchilla" (see the module docstring). For BERT, "exact" counts the
    encoder plus the head (`head` as in `count_parameters`): the pooler and classifier run
    once per sequence, so they are divided by T; masked_lm/pretraining add 2 C^2 + 2 C V per
    token (transform and decoder).
    """
    if _is_modern_decoder(config):
        if convention != "exact" or training:
            raise ValueError("Llama / Qwen3 configs: only convention='exact', training=False (x3 for training)")
        return decoder_flops_per_token(config, n_ctx if n_ctx is not None else config.max_position_embeddings)
    kind, V, P, C, L, H, F = _shape(config)
    T = int(n_ctx if n_ctx is not None else P)
    if T <= 0:
        raise ValueError(f"n_ctx must be positive, got {n_ctx}")
    N = count_parameters(config, non_embedding=True)
    if convention == "6N":
        return 6.0 * N if training else 2.0 * N
    if convention == "kaplan":
        forward = 2.0 * N + 2.0 * L * T * C
        return 3.0 * forward if training else forward
    if convention == "chinchilla":
        attention = (2 * 3 * T * C * C + 2 * T * T * C + 3 * H * T * T + 2 * T * T * C
                     + 2 * T * C * C)
        dense = 2 * T * (C * F + C * F)
        per_sequence = 2 * T * V * C + L * (attention + dense) + 2 * T * C * V
        forward = per_sequence / T
        return 3.0 * forward if training else forward
    if convention != "exact":
        raise ValueError(f"unknown convention {convention!r}: choose exact, kaplan, 6N or chinchilla")
    forward = L * (2.0 * (4 * C * C + 2 * C * F) + 4.0 * T * C)
    if kind == "gpt":
        forward += 2.0 * C * V                                  # tied LM head
    else:
        head = head or "model"
        labels = int(num_labels if num_labels is not None else getattr(config, "num_labels", 2))
        if head in ("model", "sequence_classification", "pretraining"):
            forward += 2.0 * C * C / T                          # pooler, on [CLS] only
        forward += {"model": 0.0, "sequence_classification": 2.0 * C * labels / T,
                    "token_classification": 2.0 * C * labels, "question_answering": 2.0 * C * labels,
                    "masked_lm": 2.0 * C * C + 2.0 * C * V,
                    "pretraining": 2.0 * C * C + 2.0 * C * V + 4.0 * C / T}[head]
    return 3.0 * forward if training else forward


# ----------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------

def _itemsize(dtype):
    return {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}[str(dtype)]


def activation_memory(config, batch_size, seq_len, dtype="float32", dropout=False,
                      convention="minilm", with_loss=True):
    """Bytes of activations kept for the backward pass of one forward, as a dict.

    convention="minilm" counts exactly the float arrays minilm's GPT keeps in its caches
    (a GPT config only; checked against `measure_activation_bytes`, so it must follow the
    implementation when that changes what it caches). Per block, N = B T rows:
        ln_1, ln_2: xhat (N C) + rstd (N) each          c_attn input (N C), its output q|k|v (3 N C)
        attention probabilities P (B H T T)              the attention output = c_proj's input (N C)
        c_fc input (N C); GELU keeps its derivative (N F); c_proj input (N F)
      = N (8 C + 2 F + 2) + B H T^2 elements; with dropout (training with p > 0) add the
      dropped P' and the mask (2 B H T^2) and two residual masks (2 N C).
    Outside the blocks: ln_f (N C + N), the head's input (N C), the logits (N V), and with
    labels the loss's log-probabilities (B (T-1) V); with dropout the embedding mask (N C).
    convention="korthikanti": Korthikanti et al. 2022 ("Reducing Activation Recomputation in
    Large Transformer Models"), eq. (1): s b h (34 + 5 a s / h) bytes per layer for 16-bit
    activations, 1-byte dropout masks, no recomputation or parallelism (blocks only).
    A Llama / Qwen3 config: `decoder_activation_memory` (convention="minilm" only).
    """
    if _is_modern_decoder(config):
        if convention != "minilm" or dropout:
            raise ValueError("Llama / Qwen3 configs: convention='minilm' without dropout only "
                             "(Korthikanti's eq. (1) counts GPT-2's block; these models have no dropout)")
        return decoder_activation_memory(config, batch_size, seq_len, dtype, with_loss)
    kind, V, P, C, L, H, F = _shape(config)
    B, T = int(batch_size), int(seq_len)
    N = B * T
    if convention == "korthikanti":
        per_layer = T * B * C * (34 + 5 * H * T / C)
        return {"per_layer": per_layer, "blocks": L * per_layer, "total": L * per_layer}
    if convention != "minilm":
        raise ValueError(f"unknown convention {convention!r}: choose minilm or korthikanti")
    if kind != "gpt":
        raise ValueError("convention='minilm' is written for minilm's GPT; use "
                         "convention='korthikanti' or measure_activation_bytes(model) for BERT")
    b = _itemsize(dtype)
    per_layer = N * (8 * C + 2 * F + 2) + B * H * T * T
    if dropout:
        per_layer += 2 * B * H * T * T + 2 * N * C
    outside = N * C + N + N * C + N * V                        # ln_f, head input, logits
    if with_loss:
        outside += B * (T - 1) * V                             # log-probabilities
    if dropout:
        outside += N * C
    return {"per_layer": per_layer * b, "blocks": L * per_layer * b, "outside": outside * b,
            "total": (L * per_layer + outside) * b}


def decoder_activation_memory(config, batch_size, seq_len, dtype="float32", with_loss=True):
    """Bytes of activations minilm's Llama / Qwen3 keeps for the backward pass, as a dict.

    Counted from the caches of minilm's layers (checked against `measure_activation_bytes`,
    so it must follow the implementation). N = B T rows; H query heads, H_kv key/value
    heads of width D, F the SwiGLU width. Per layer:
        input_layernorm: xhat (N C) + rstd (N)        its output, the q/k/v projections' input (N C)
        attention: q and k after RoPE, v (N H D each: k and v repeated to H heads when
            H_kv < H, so grouped-query attention saves nothing here), P (B H T T), and the
            output y (N H D), which is also o_proj's input (attention_forward writes it
            head-minor, so merge_heads is a free reshape)
        Qwen3's q_norm / k_norm: xhat + rstd, N H (D + 1) and N H_kv (D + 1)
        post_attention_layernorm: xhat (N C) + rstd (N), its output (N C)
        SwiGLU: g = gate_proj(x), sigmoid(g), a = silu(g), u = up_proj(x), a * u: 5 N F
      = N (4 C + 2 + 4 H D + 5 F) + B H T^2  [+ N (H + H_kv)(D + 1)]
    Outside the layers: the RoPE tables cos, sin (2 T D, shared by every layer), the final
    norm (N C + N), the head's input (N C), the logits (N V) and with labels the loss's
    log-probabilities (B (T-1) V).
    """
    V, C, L, H, H_kv, D, F, tied, bias, qk_norm = _decoder_shape(config)
    B, T = int(batch_size), int(seq_len)
    N = B * T
    b = _itemsize(dtype)
    per_layer = N * (4 * C + 2 + 4 * H * D + 5 * F) + B * H * T * T
    if qk_norm:
        per_layer += N * (H + H_kv) * (D + 1)
    outside = 2 * T * D + N * C + N + N * C + N * V
    if with_loss:
        outside += B * (T - 1) * V
    return {"per_layer": per_layer * b, "blocks": L * per_layer * b, "outside": outside * b,
            "total": (L * per_layer + outside) * b}


def kv_cache_memory(config, batch_size=1, seq_len=None, dtype="float32"):
    """Bytes of the key/value cache that decoding keeps, as a dict.

        per_token = 2 (keys and values) x L x H_kv x D x bytes per number
    GPT-2 caches every head (H_kv = H, D = C / H: 2 L C numbers per token); a Llama / Qwen3
    with grouped-query attention caches only its H_kv key/value heads, H / H_kv times less.
    seq_len: tokens cached (default: the full context); total = batch_size x seq_len x per_token.
    This is what `model.init_kv_cache(batch_size, seq_len)` allocates in minilm.
    """
    if _is_modern_decoder(config):
        V, C, L, H, H_kv, D, F, tied, bias, qk_norm = _decoder_shape(config)
        context = int(config.max_position_embeddings)
    else:
        kind, V, context, C, L, H, F = _shape(config)
        if kind != "gpt":
            raise ValueError("kv_cache_memory: a BERT encoder reads the whole input at once and keeps no "
                             "key/value cache; pass a GPT, Llama or Qwen3 config")
        H_kv, D = H, C // H
    T = int(seq_len if seq_len is not None else context)
    if T <= 0 or int(batch_size) <= 0:
        raise ValueError(f"batch_size and seq_len must be positive, got {batch_size}, {T}")
    per_token = 2 * L * H_kv * D * _itemsize(dtype)
    return {"per_token": per_token, "kv_heads": H_kv, "head_dim": D, "layers": L,
            "total": int(batch_size) * T * per_token}


def optimizer_memory(config_or_count, optimizer="adamw", precision="fp32", minilm=False):
    """Bytes for weights, gradients and optimiser state, as a dict (activations apart).

    precision="fp32": weights 4 N, gradients 4 N; Adam/AdamW keep m and v (8 N), SGD with
    momentum one buffer (4 N), plain SGD nothing. minilm=True adds the one work buffer per
    parameter that minilm's Adam keeps so that a step allocates nothing (4 N).
    precision="mixed": mixed-precision Adam as counted by ZeRO (Rajbhandari et al. 2020,
    section 3.1): fp16 weights and gradients (2 N + 2 N) plus an fp32 master copy, m and v
    (12 N) = 16 N bytes.
    """
    n = config_or_count if isinstance(config_or_count, int) else count_parameters(config_or_count)
    copies = {"adam": 2, "adamw": 2, "sgd_momentum": 1, "sgd": 0}
    if optimizer not in copies:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {tuple(copies)}")
    if precision == "fp32":
        out = {"weights": 4 * n, "grads": 4 * n, "optimizer_state": 4 * n * copies[optimizer]}
        if minilm and copies[optimizer] == 2:
            out["scratch"] = 4 * n
    elif precision == "mixed":
        out = {"weights": 2 * n, "grads": 2 * n, "master_weights": 4 * n,
               "optimizer_state": 4 * n * copies[optimizer]}
    else:
        raise ValueError(f"precision must be 'fp32' or 'mixed', got {precision!r}")
    out["total"] = sum(out.values())
    return out


def training_memory(config, batch_size, seq_len, optimizer="adamw", precision="fp32"):
    """Everything one training step holds: weights, gradients, optimiser state, activations."""
    state = optimizer_memory(config, optimizer, precision)
    kind = "llama" if _is_modern_decoder(config) else _shape(config)[0]
    if kind == "llama":
        act = decoder_activation_memory(config, batch_size, seq_len,
                                        "float32" if precision == "fp32" else "float16")["total"]
    elif kind == "gpt" and precision == "fp32":
        act = activation_memory(config, batch_size, seq_len)["total"]
    else:
        act = activation_memory(config, batch_size, seq_len, convention="korthikanti")["total"]
    out = {k: v for k, v in state.items() if k != "total"}
    out["activations"] = act
    out["total"] = sum(out.values())
    return out


def measure_activation_bytes(model, extra=()):
    """Bytes of float arrays a model holds for its backward right after a forward.

    Walks every module's `cache` (and attributes named `_..._cache`, like GPT's
    `_head_cache` and `_loss_cache`), counts each underlying buffer once (views share their
    base), and skips parameters (not activations) and integer/bool arrays (ids, masks).
    `extra`: arrays the caller holds and wants counted too (the logits, say).
    """
    params = {id(_root(p.data)) for p in model.parameters()}
    seen, total = set(), 0

    def visit(obj):
        nonlocal total
        if obj is None:
            return
        if isinstance(obj, (tuple, list)):
            for o in obj:
                visit(o)
            return
        if hasattr(obj, "dtype") and hasattr(obj, "nbytes") and hasattr(obj, "shape"):
            if obj.dtype.kind != "f":
                return
            root = _root(obj)
            if id(root) in params or id(root) in seen:
                return
            seen.add(id(root))
            total += int(root.nbytes)

    for m in model.modules():
        for name, value in vars(m).items():
            if name == "cache" or (name.startswith("_") and name.endswith("_cache")):
                visit(value)
    visit(list(extra))
    return total


def _root(a):
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def summary(config, batch_size=1, seq_len=None, precision="fp32"):
    """A few lines of text: parameters, FLOPs per token (three conventions), memory."""
    n = count_parameters(config)
    if _is_modern_decoder(config):
        V, C, L, H, H_kv, D, F, tied, bias, qk_norm = _decoder_shape(config)
        T = seq_len or int(config.max_position_embeddings)
        lines = [f"{getattr(config, 'model_type', 'llama').upper()}: L={L} C={C} H={H} H_kv={H_kv} D={D} "
                 f"F={F} V={V} context={config.max_position_embeddings}",
                 f"parameters: {n:,} (non-embedding {count_parameters(config, non_embedding=True):,})",
                 f"training FLOPs/token at T={T} (exact): {3 * flops_per_token(config, T):.4g}",
                 f"KV cache: {kv_cache_memory(config, 1, T)['per_token']:,} bytes per token (float32)"]
    else:
        kind, V, P, C, L, H, F = _shape(config)
        T = seq_len or P
        lines = [f"{kind.upper()}: L={L} C={C} H={H} F={F} V={V} context={P}",
                 f"parameters: {n:,} (non-embedding {count_parameters(config, non_embedding=True):,})"]
        for conv in ("exact", "kaplan", "6N", "chinchilla"):
            f = flops_per_token(config, T, conv, training=True)
            lines.append(f"training FLOPs/token at T={T} ({conv}): {f:.4g}")
    mem = training_memory(config, batch_size, T, precision=precision)
    lines.append("memory (B={}, T={}, {}): ".format(batch_size, T, precision)
                 + ", ".join(f"{k} {v / 2**20:,.1f} MiB" for k, v in mem.items()))
    return "\n".join(lines)



