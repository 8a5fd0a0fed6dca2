"""The modern decoder's layers (Llama, Qwen3): RMSNorm, rotary grouped-query attention,
SwiGLU MLP, and the pre-norm decoder layer that holds them.

    h   = x + o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))    n = input_layernorm(x)
    out = h + down_proj(silu(gate_proj(m)) * up_proj(m))                        m = post_attention_layernorm(h)

Names are transformers' (`self_attn.q_proj`, `mlp.gate_proj`, `input_layernorm`, ...); weights
are minilm's (in, out), so the models transpose them on load and save.
"""
from ..backend import get_xp
from ..ops import (attention_backward, attention_forward, causal_mask, check_gqa_heads, merge_heads,
                   repeat_kv_backward, repeat_kv_forward, rmsnorm_backward, rmsnorm_forward,
                   rope_backward, rope_forward, silu_backward, silu_forward)
from .base import Module, new_param
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


class RotaryAttention(Module):
    """Causal self-attention with rotary positions and H_kv <= H key/value heads.

    Qwen3 (`qk_norm=True`) RMS-normalises each query and key head (q_norm, k_norm: (D,))
    before the rotation.
    """

    def __init__(self, C, H, H_kv, D, bias=False, qk_norm=False, eps=1e-6, dtype="float32", rng=None,
                 std=0.02):
        self.n_rep = check_gqa_heads(H, H_kv)
        self.H, self.H_kv, self.D = H, H_kv, D
        self.q_proj = Linear(C, H * D, bias, dtype, rng, std)
        self.k_proj = Linear(C, H_kv * D, bias, dtype, rng, std)
        self.v_proj = Linear(C, H_kv * D, bias, dtype, rng, std)
        self.o_proj = Linear(H * D, C, bias, dtype, rng, std)
        self.q_norm = RMSNorm(D, eps, dtype) if qk_norm else None
        self.k_norm = RMSNorm(D, eps, dtype) if qk_norm else None
        self.cache = None
        self.attention_probs = None

    def named_children(self):
        norms = [("q_norm", self.q_norm), ("k_norm", self.k_norm)] if self.q_norm is not None else []
        return [("q_proj", self.q_proj), ("k_proj", self.k_proj), ("v_proj", self.v_proj),
                ("o_proj", self.o_proj)] + norms

    def _heads(self, proj, norm, x, heads, cos=None, sin=None):
        """(B, T, C) -> (B, heads, T, D): project, [RMSNorm per head], [rotate]; and the caches."""
        B, T, _ = x.shape
        y = proj.forward(x).reshape(B, T, heads, self.D)   # (B, T, heads, D)
        if norm is not None:
            y = norm.forward(y)                            # (B, T, heads, D)
        y = y.transpose(0, 2, 1, 3)                        # (B, heads, T, D)
        rope_cache = None
        if cos is not None:
            y, rope_cache = rope_forward(y, cos, sin)      # (B, heads, T, D)
        return y, rope_cache

    def _heads_backward(self, proj, norm, dy, rope_cache):
        """Undo _heads: (B, heads, T, D) -> (B, T, C)."""
        if rope_cache is not None:
            dy = rope_backward(dy, rope_cache)             # undo: y = rope(y)
        B, heads, T, D = dy.shape
        dy = dy.transpose(0, 2, 1, 3)                      # undo: transpose  (B, T, heads, D)
        if norm is not None:
            dy = norm.backward(dy)                         # undo: y = norm(y)
        return proj.backward(dy.reshape(B, T, heads * D))  # undo: y = proj(x)

    def forward(self, x, cos, sin, key_mask=None):         # (B, T, C) -> (B, T, C)
        """cos, sin: (B, T, D) rotary tables at each token's position; key_mask: (B, 1, 1, T) or None."""
        xp = get_xp(x)
        T = x.shape[1]
        q, q_rope = self._heads(self.q_proj, self.q_norm, x, self.H, cos, sin)      # (B, H, T, D)
        k, k_rope = self._heads(self.k_proj, self.k_norm, x, self.H_kv, cos, sin)   # (B, H_kv, T, D)
        v, _ = self._heads(self.v_proj, None, x, self.H_kv)                         # (B, H_kv, T, D)
        k_all, rep_cache = repeat_kv_forward(k, self.n_rep)                         # (B, H, T, D)
        v_all, _ = repeat_kv_forward(v, self.n_rep)                                 # (B, H, T, D)
        mask = causal_mask(xp, T)                                                   # (T, T)
        if key_mask is not None:
            mask = mask & key_mask                                                  # (B, 1, T, T)
        a, attn_cache = attention_forward(q, k_all, v_all, mask)                    # (B, H, T, D)
        self.attention_probs = attn_cache[4]                                        # (B, H, T, T)
        out = self.o_proj.forward(merge_heads(a))                                   # (B, T, C)
        self.cache = (q_rope, k_rope, rep_cache, attn_cache)
        return out

    def backward(self, dout):                              # (B, T, C) -> (B, T, C)
        q_rope, k_rope, rep_cache, attn_cache = self._check_cache()
        B, T, _ = dout.shape
        da = self.o_proj.backward(dout)                    # undo: out = o_proj(merge_heads(a))
        da = da.reshape(B, T, self.H, self.D).transpose(0, 2, 1, 3)    # (B, H, T, D)
        dq, dk_all, dv_all = attention_backward(da, attn_cache)        # undo: a = attention(q, k, v)
        dv = repeat_kv_backward(dv_all, rep_cache)         # undo: v_all = repeat_kv(v)  (B, H_kv, T, D)
        dk = repeat_kv_backward(dk_all, rep_cache)         # undo: k_all = repeat_kv(k)  (B, H_kv, T, D)
        dx = self._heads_backward(self.v_proj, None, dv, None)         # x feeds q, k and v: the three add
        dx = dx + self._heads_backward(self.k_proj, self.k_norm, dk, k_rope)
        return dx + self._heads_backward(self.q_proj, self.q_norm, dq, q_rope)

    def forward_cached(self, x, k_cache, v_cache, pos, cos, sin):
        """Inference only: x (B, t, C) at positions pos..pos+t-1; rotated keys and values are
        written into k_cache, v_cache (B, H_kv, max_len, D), so the cache stores H_kv heads."""
        xp = get_xp(x)
        t = x.shape[1]
        q, _ = self._heads(self.q_proj, self.q_norm, x, self.H, cos, sin)          # (B, H, t, D)
        k, _ = self._heads(self.k_proj, self.k_norm, x, self.H_kv, cos, sin)       # (B, H_kv, t, D)
        v, _ = self._heads(self.v_proj, None, x, self.H_kv)                        # (B, H_kv, t, D)
        k_cache[:, :, pos:pos + t] = k
        v_cache[:, :, pos:pos + t] = v
        k_all, _ = repeat_kv_forward(k_cache[:, :, :pos + t], self.n_rep)          # (B, H, pos+t, D)
        v_all, _ = repeat_kv_forward(v_cache[:, :, :pos + t], self.n_rep)          # (B, H, pos+t, D)
        a, _ = attention_forward(q, k_all, v_all, causal_mask(xp, t, pos + t))     # (B, H, t, D)
        return self.o_proj.forward(merge_heads(a))                                 # (B, t, C)


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


class LlamaDecoderLayer(Module):
    """Pre-norm: h = x + self_attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h))."""

    def __init__(self, C, F, H, H_kv, D, eps=1e-6, bias=False, qk_norm=False, dtype="float32", rng=None,
                 std=0.02):
        self.input_layernorm = RMSNorm(C, eps, dtype)
        self.self_attn = RotaryAttention(C, H, H_kv, D, bias, qk_norm, eps, dtype, rng, std)
        self.post_attention_layernorm = RMSNorm(C, eps, dtype)
        self.mlp = SwiGLUMLP(C, F, False, dtype, rng, std)

    def named_children(self):
        return [("self_attn", self.self_attn), ("mlp", self.mlp),
                ("input_layernorm", self.input_layernorm),
                ("post_attention_layernorm", self.post_attention_layernorm)]

    def forward(self, x, cos, sin, key_mask=None):         # (B, T, C) -> (B, T, C)
        h = x + self.self_attn.forward(self.input_layernorm.forward(x), cos, sin, key_mask)
        return h + self.mlp.forward(self.post_attention_layernorm.forward(h))

    def backward(self, dout):                              # (B, T, C) -> (B, T, C)
        dh = dout + self.post_attention_layernorm.backward(self.mlp.backward(dout))   # undo: out = h + mlp(...)
        return dh + self.input_layernorm.backward(self.self_attn.backward(dh))        # undo: h = x + self_attn(...)

    def forward_cached(self, x, k_cache, v_cache, pos, cos, sin):
        h = x + self.self_attn.forward_cached(self.input_layernorm.forward(x), k_cache, v_cache, pos, cos, sin)
        return h + self.mlp.forward(self.post_attention_layernorm.forward(h))
