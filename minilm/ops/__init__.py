"""Floor 1: pure forward/backward pairs, one idea per file, with the losses (losses.py) and
the gradient checker that tests them (check.py: gradcheck, numerical_grad).

Every op is `name_forward(arrays..., *, hyperparameters) -> (out, cache)` and
`name_backward(dout, cache) -> grads` (in the order of the forward's array arguments).
Where speed work changed an op's form (LayerNorm, softmax, GELU, attention), the textbook
form the chapters derive sits beside it as `name_forward_textbook` / `name_backward_textbook`,
and a test keeps the two in agreement; the models use the fast forms. Linear, Embedding and
LayerNorm also have `name_per_example_grads(dout, cache)`: each example's own parameter
gradients (B, *param.shape), which DP-SGD clips one by one (minilm/applications/trust/privacy.py).
"""
from .activations import (erf, gelu_erf_backward, gelu_erf_forward, gelu_tanh_backward,
                          gelu_tanh_backward_textbook, gelu_tanh_forward, gelu_tanh_forward_textbook,
                          get_activation, relu_backward, relu_forward, tanh_backward, tanh_forward)
from .attention import (attention_backward, attention_backward_textbook, attention_forward,
                        attention_forward_textbook, causal_mask, merge_heads, padding_mask, split_heads)
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward, embedding_per_example_grads
from .layernorm import (layernorm_backward, layernorm_backward_textbook, layernorm_forward,
                        layernorm_forward_textbook, layernorm_per_example_grads)
from .linear import linear_backward, linear_forward, linear_per_example_grads
from .softmax import (log_softmax, row_max, row_sum, softmax_backward, softmax_backward_textbook,
                      softmax_forward, softmax_forward_textbook)
from .gqa import check_gqa_heads, repeat_kv_backward, repeat_kv_forward
from .rmsnorm import rmsnorm_backward, rmsnorm_forward
from .rope import interleaved_to_half, rope_backward, rope_forward, rope_tables, rotate_half
from .swiglu import silu_backward, silu_forward, swiglu_backward, swiglu_forward
