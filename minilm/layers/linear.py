"""Linear, Embedding, LayerNorm and Dropout: layers that own Parameters and call one op."""
from ..ops import (dropout_backward, dropout_forward, embedding_backward, embedding_forward,
                   embedding_per_example_grads, layernorm_backward, layernorm_forward,
                   layernorm_per_example_grads, linear_backward, linear_forward,
                   linear_per_example_grads)
from .base import Module, new_param


class Linear(Module):
    """y = x W + b with W: (in, out), the GPT-2 (Conv1D) layout.

    PyTorch's nn.Linear stores (out, in); checkpoints in that layout are transposed on load.
    """
    calls_backward_hooks = True

    def __init__(self, n_in, n_out, bias=True, dtype="float32", rng=None, std=0.02):
        self.weight = new_param((n_in, n_out), dtype, rng, std=std)
        self.bias = new_param((n_out,), dtype, rng, fill=0.0) if bias else None
        self.cache = None

    def own_parameters(self):
        return [("weight", self.weight)] + ([("bias", self.bias)] if self.bias is not None else [])

    def forward(self, x):                                  # (..., in) -> (..., out)
        out, self.cache = linear_forward(x, self.weight.data,
                                         None if self.bias is None else self.bias.data)
        return out

    def backward(self, dout):                              # (..., out) -> (..., in)
        cache = self._check_cache()
        self.run_backward_hooks(dout, cache)
        dx, dW, db = linear_backward(dout, cache)
        self.weight.grad += dW
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def per_example_param_grads(self, dout, cache):
        """[(parameter, its (B, *shape) per-example gradients)] for a backward's dout, cache."""
        dW, db = linear_per_example_grads(dout, cache)
        return [(self.weight, dW)] + ([(self.bias, db)] if self.bias is not None else [])


class Embedding(Module):
    """Lookup table: out[i] = weight[ids[i]]. Backward scatter-adds (repeated ids accumulate)."""
    calls_backward_hooks = True

    def __init__(self, num, dim, dtype="float32", rng=None, std=0.02):
        self.weight = new_param((num, dim), dtype, rng, std=std)
        self.cache = None

    def own_parameters(self):
        return [("weight", self.weight)]

    def forward(self, ids):                                # (...) ints -> (..., C)
        out, self.cache = embedding_forward(ids, self.weight.data)
        return out

    def backward(self, dout):                              # (..., C) -> None (ids have no gradient)
        cache = self._check_cache()
        self.run_backward_hooks(dout, cache)
        self.weight.grad += embedding_backward(dout, cache)
        return None

    def per_example_param_grads(self, dout, cache):
        """[(weight, its (B, V, C) per-example gradients)] for a backward's dout, cache."""
        return [(self.weight, embedding_per_example_grads(dout, cache))]


class LayerNorm(Module):
    """out = gamma * (x - mean) / sqrt(var + eps) + beta over the last axis.
    Hugging Face names gamma `weight` and beta `bias`."""
    calls_backward_hooks = True

    def __init__(self, dim, eps=1e-5, dtype="float32"):
        self.weight = new_param((dim,), dtype, None, fill=1.0)
        self.bias = new_param((dim,), dtype, None, fill=0.0)
        self.eps = eps
        self.cache = None

    def own_parameters(self):
        return [("weight", self.weight), ("bias", self.bias)]

    def forward(self, x):                                  # (..., C) -> (..., C)
        out, self.cache = layernorm_forward(x, self.weight.data, self.bias.data, self.eps)
        return out

    def backward(self, dout):
        cache = self._check_cache()
        self.run_backward_hooks(dout, cache)
        dx, dgamma, dbeta = layernorm_backward(dout, cache)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx

    def per_example_param_grads(self, dout, cache):
        """[(gamma, (B, C)), (beta, (B, C))] per-example gradients for a backward's dout, cache."""
        dgamma, dbeta = layernorm_per_example_grads(dout, cache)
        return [(self.weight, dgamma), (self.bias, dbeta)]


class Dropout(Module):
    """Inverted dropout while training, identity in eval mode or with p = 0.

    `rng` is the model's random Generator (shared by all its dropout layers, so the model owns
    one seeded stream that a checkpoint can save and restore), or a callable returning it.
    """

    def __init__(self, p, rng=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng
        self.cache = None

    def forward(self, x):
        active = self.training and self.p > 0.0 and self.rng is not None
        rng = (self.rng() if callable(self.rng) else self.rng) if active else None
        out, self.cache = dropout_forward(x, self.p, rng)
        self.cache = (self.cache,)
        return out

    def backward(self, dout):
        (mask,) = self._check_cache()
        return dropout_backward(dout, mask)
