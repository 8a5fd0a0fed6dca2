"""Position-wise feed-forward network: out = act(x W_1 + b_1) W_2 + b_2."""
from ..ops import get_activation
from .base import Module
from .linear import Linear


class FeedForward(Module):
    """Two linear maps with an activation between (ReLU in the original Transformer,
    GELU in GPT-2 and BERT). `names` are the two projections' checkpoint names."""

    def __init__(self, d_model, d_ff, activation="gelu_new", dtype="float32", rng=None,
                 std=0.02, proj_std=None, names=("c_fc", "c_proj")):
        self.fc = Linear(d_model, d_ff, dtype=dtype, rng=rng, std=std)
        self.proj = Linear(d_ff, d_model, dtype=dtype, rng=rng, std=std if proj_std is None else proj_std)
        self.act_forward, self.act_backward = get_activation(activation)
        self.names = names
        self.cache = None

    def named_children(self):
        return [(self.names[0], self.fc), (self.names[1], self.proj)]

    def forward(self, x):                                  # (B, T, C) -> (B, T, C)
        h, self.cache = self.act_forward(self.fc.forward(x))   # (B, T, F)
        return self.proj.forward(h)

    def backward(self, dout):
        dh = self.proj.backward(dout)                      # undo: out = h W_2 + b_2
        return self.fc.backward(self.act_backward(dh, self._check_cache()))  # undo: h = act(x W_1 + b_1)
