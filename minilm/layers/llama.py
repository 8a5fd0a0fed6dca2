"""The modern decoder's layers (Llama, Qwen3): RMSNorm, rotary grouped-query attention,
SwiGLU MLP, and the pre-norm decoder layer that holds them. The attention is the shared
MultiHeadAttention (rotary, grouped-query and q/k-norm options) and the layer the shared
PreLNBlock: only the names and the parts differ from GPT-2's.

    h   = x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))    n = input_layernorm(x)
    out = h + down_proj(silu(gate_proj(m)) * up_proj(m))                        m = post_attention_layernorm(h)

Names are transformers' (`self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm`, ...); weights
are minilm's (in, out), so the models transpose them on load and save.
"""
from ..ops import rmsnorm_backward, rmsnorm_forward, silu_backward, silu_forward
from .attention import MultiHeadAttention
from .base import Module, new_param
from .block import PreLNBlock
from .linear import Linear


class RMSNorm(Module):
    """out = weight * x / sqrt(mean(x^2) + eps) over the last axis (no centring, no bias)."""

    def __init__(self, dim, eps=1e-6, dtype="float32"):
        self.weight = new_param((dim,), dtype, None, fill=1.0)
        self.eps = eps
        self.cache = None

    def own_parameters(self):
        return [("weight", self.weight)]

    def forward(self, x):                                  # (..., C) -> (..., C)
        out, self.cache = rmsnorm_forward(x, self.weight.data, self.eps)
        return out

    def backward(self, dout):                              # (..., C) -> (..., C)
        dx, dw = rmsnorm_backward(dout, self._check_cache())
        self.weight.grad += dw
        return dx


class RotaryAttention(MultiHeadAttention):
    """Llama's / Qwen3's self-attention: the shared MultiHeadAttention, causal, rotary, with
    H_kv <= H key/value heads, head width D, and (Qwen3, `qk_norm=True`) an RMSNorm (D,) on
    each query and key head before the rotation; under transformers' names q_proj, k_proj,
    v_proj, o_proj (and q_norm, k_norm).

        forward(x, key_mask=None, rope=(cos, sin)) -> (B, T, C)
    """

    def __init__(self, C, H, H_kv, D, bias=False, qk_norm=False, eps=1e-6, dtype="float32", rng=None,
                 std=0.02):
        super().__init__(C, H, dtype=dtype, rng=rng, std=std, names=("q_proj", "k_proj", "v_proj", "o_proj"),
                         causal=True, n_kv_head=H_kv, head_dim=D, bias=bias, rotary=True,
                         q_norm=RMSNorm(D, eps, dtype) if qk_norm else None,
                         k_norm=RMSNorm(D, eps, dtype) if qk_norm else None)

    # transformers' names for the four projections
    @property
    def q_proj(self):
        return self.q

    @property
    def k_proj(self):
        return self.k

    @property
    def v_proj(self):
        return self.v

    @property
    def o_proj(self):
        return self.o


class SwiGLUMLP(Module):
    """out = down_proj(silu(gate_proj(x)) * up_proj(x)); the op form is ops.swiglu_forward."""

    def __init__(self, C, F, bias=False, dtype="float32", rng=None, std=0.02):
        self.gate_proj = Linear(C, F, bias, dtype, rng, std)
        self.up_proj = Linear(C, F, bias, dtype, rng, std)
        self.down_proj = Linear(F, C, bias, dtype, rng, std)
        self.cache = None

    def named_children(self):
        return [("gate_proj", self.gate_proj), ("up_proj", self.up_proj), ("down_proj", self.down_proj)]

    def forward(self, x):                                  # (..., C) -> (..., C)
        a, silu_cache = silu_forward(self.gate_proj.forward(x))        # (..., F)
        u = self.up_proj.forward(x)                                    # (..., F)
        self.cache = (silu_cache, a, u)
        return self.down_proj.forward(a * u)                           # (..., C)

    def backward(self, dout):                              # (..., C) -> (..., C)
        silu_cache, a, u = self._check_cache()
        dh = self.down_proj.backward(dout)                 # undo: out = down_proj(h)
        da, du = dh * u, dh * a                            # undo: h = a * u
        dx = self.up_proj.backward(du)                     # undo: u = up_proj(x)
        return dx + self.gate_proj.backward(silu_backward(da, silu_cache))   # undo: a = silu(gate_proj(x))


def LlamaDecoderLayer(C, F, H, H_kv, D, eps=1e-6, bias=False, qk_norm=False, dtype="float32",  # noqa: N802
                      rng=None, std=0.02):
    """The shared pre-norm block with RMSNorm, rotary attention and the SwiGLU MLP:

        h = x + self_attn(input_layernorm(x));  out = h + mlp(post_attention_layernorm(h))
        layer.forward(x, key_mask=None, rope=(cos, sin));  layer.backward(dout)
    """
    return PreLNBlock([
        ("self_attn", "attn", RotaryAttention(C, H, H_kv, D, bias, qk_norm, eps, dtype, rng, std)),
        ("mlp", "ffn", SwiGLUMLP(C, F, False, dtype, rng, std)),
        ("input_layernorm", "attn_norm", RMSNorm(C, eps, dtype)),
        ("post_attention_layernorm", "ffn_norm", RMSNorm(C, eps, dtype))])
