"""Linear, Embedding, LayerNorm and Dropout: layers that own Parameters and call one op."""
from ..ops import (dropout_backward, dropout_forward, embedding_backward, embedding_forward,
                   layernorm_backward, layernorm_forward, linear_backward, linear_forward)
from ..backend import get_xp
from .base import Module, add_grad_sample, new_param


class Linear(Module):
    """y = x W + b with W: (in, out), the GPT-2 (Conv1D) layout.

    PyTorch's nn.Linear stores (out, in); checkpoints in that layout are transposed on load.
    """

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
        dx, dW, db = linear_backward(dout, cache)
        self.weight.grad += dW
        if self.bias is not None:
            self.bias.grad += db
        if self.weight.grad_sample is not None:            # per-example: dW_b = x_b^T dout_b
            x = cache[0]
            B = x.shape[0]
            x3 = x.reshape(B, -1, x.shape[-1])             # (B, rows, in)
            d3 = dout.reshape(B, -1, dout.shape[-1])       # (B, rows, out)
            add_grad_sample(self.weight, x3.swapaxes(1, 2) @ d3)          # (B, in, out)
            if self.bias is not None:
                add_grad_sample(self.bias, d3.sum(axis=1))                 # (B, out)
        return dx


class Embedding(Module):
    """Lookup table: out[i] = weight[ids[i]]. Backward scatter-adds (repeated ids accumulate)."""

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
        self.weight.grad += embedding_backward(dout, cache)
        if self.weight.grad_sample is not None:            # per-example scatter-add: (B, V, C)
            ids, (V, C) = cache
            xp = get_xp(dout)
            B = dout.shape[0]
            ids2 = xp.broadcast_to(ids, dout.shape[:-1]).reshape(B, -1)      # (B, rows)
            g = xp.zeros((B, V, C), dtype=dout.dtype)
            rows = xp.broadcast_to(xp.arange(B)[:, None], ids2.shape)
            xp.add.at(g, (rows.reshape(-1), ids2.reshape(-1)), dout.reshape(-1, C))
            add_grad_sample(self.weight, g)
        return None


class LayerNorm(Module):
    """out = gamma * (x - mean) / sqrt(var + eps) + beta over the last axis.
    Hugging Face names gamma `weight` and beta `bias`."""

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
        dx, dgamma, dbeta = layernorm_backward(dout, cache)
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        if self.weight.grad_sample is not None:            # per-example sums over the rows of each example
            xhat = cache[0]
            B, C = dout.shape[0], dout.shape[-1]
            add_grad_sample(self.weight, (dout * xhat).reshape(B, -1, C).sum(axis=1))   # (B, C)
            add_grad_sample(self.bias, dout.reshape(B, -1, C).sum(axis=1))             # (B, C)
        return dx


class Dropout(Module):
    """Inverted dropout while training, identity in eval mode or with p = 0.

    `rng` is a callable returning the model's random Generator (shared by all its dropout
    layers), so the model owns one seeded stream that a checkpoint can save and restore.
    """

    def __init__(self, p, rng=None):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng
        self.cache = None

    def forward(self, x):
        active = self.training and self.p > 0.0 and self.rng is not None
        out, self.cache = dropout_forward(x, self.p, self.rng() if active else None)
        self.cache = (self.cache,)
        return out

    def backward(self, dout):
        (mask,) = self._check_cache()
        return dropout_backward(dout, mask)
