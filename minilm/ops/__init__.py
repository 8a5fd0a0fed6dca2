"""Pure forward/backward pairs, one idea per file.

Every op is `name_forward(arrays..., *, hyperparameters) -> (out, cache)` and
`name_backward(dout, cache) -> grads` (in the order of the forward's array arguments).
"""
from .activations import (erf, gelu_erf_backward, gelu_erf_forward, gelu_tanh_backward,
                          gelu_tanh_forward, get_activation, relu_backward, relu_forward,
                          tanh_backward, tanh_forward)
from .attention import (attention_backward, attention_forward, causal_mask, merge_heads,
                        padding_mask, split_heads)
from .dropout import dropout_backward, dropout_forward
from .embedding import embedding_backward, embedding_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .softmax import log_softmax, row_max, row_sum, softmax_backward, softmax_forward
