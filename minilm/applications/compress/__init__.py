"""Making models smaller and cheaper: distillation, quantisation, pruning, LoRA.

    distill.py    soft-target loss (op pair), hidden-state matching, Distiller
    quantize.py   int8 PTQ (symmetric/asymmetric, per-tensor/per-channel), int8 matmul with
                  int32 accumulation, QAT with the straight-through estimator, int8 checkpoints
    prune.py      magnitude pruning with masks; attention-head gates, importance, removal
    lora.py       low-rank adapters on a frozen model, merge back into the weights
    modules.py    finding layers (inside the model's transformer_blocks(), or by checkpoint
                  name) and swapping them in place

Each technique replaces some layers of an existing minilm model by new ones, in place, by
setting the attribute on the parent (see modules.py). The command line is
`python -m minilm.compress --help` (experiments whose results are summarised in BENCHMARKS.md).
"""
from .distill import (Distiller, distillation_loss_backward, distillation_loss_forward,
                      hidden_mse_backward, hidden_mse_forward, layer_map)
from .lora import LoRALinear, apply_lora, lora_parameters, merge_lora, parameter_report
from .prune import (GatedBertSelfAttention, GatedCausalSelfAttention, MaskedLinear, add_head_gates,
                    apply_masks, head_gate_backward, head_gate_forward, head_importance,
                    heads_to_prune, magnitude_prune, mask_heads, prune_heads, remove_masks, sparsity)
from .quantize import (QATLinear, QuantizedEmbedding, QuantizedLinear, convert_qat, dequantize,
                       fake_quant_backward, fake_quant_forward, int8_matmul, load_quantized,
                       prepare_qat, quant_params, quantize, quantize_model, quantize_rows,
                       save_quantized, set_matmul, weight_bytes)
