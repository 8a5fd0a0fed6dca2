"""LoRA: fine-tune a frozen model through small low-rank adapters (Hu et al. 2021).

A Linear layer y = x W + b (W: (in, out)) gets two small matrices, A: (in, r) and B: (r, out),
with r much smaller than in and out:

    y = x W + b + (alpha / r) (x A) B

W and b stay frozen; only A and B are trained, r (in + out) numbers instead of in * out.
B starts at zero, so the adapted model starts out *exactly* the base model, and A starts
random (Kaiming-uniform, U(-1/sqrt(in), 1/sqrt(in)), as Hugging Face PEFT does), so that the
first gradient step on B is not zero. alpha / r keeps the size of the update about the same
when r changes. After training, W' = W + (alpha / r) A B is a plain Linear again (`merge_lora`):
inference costs nothing extra.

    from minilm.compress import apply_lora, lora_parameters, merge_lora, parameter_report
    apply_lora(model, r=8, alpha=16)                  # every projection in every block
    opt = AdamW(lora_parameters(model) + model.classifier.parameters(), lr=1e-3)
    ... train: model(...); model.backward(); opt.step() ...
    merge_lora(model)                                 # back to Linear layers, same outputs

Freezing. minilm's Parameters have no `requires_grad` flag; freezing has two parts here.
(1) A `LoRALinear` never computes dW or db for its frozen base (that is most of LoRA's saving
in compute: one matrix product fewer per layer in backward), so their .grad stays zero.
(2) The optimiser is given only the trainable parameters (`lora_parameters(model)`, plus any
head you train too); the other layers of the model (LayerNorms, embeddings) still get
gradients from their own backward, and nothing ever reads them.
"""
import math

from ...backend import get_xp, host_rng
from ...layers import Linear, Module, Parameter
from ...ops import linear_forward
from .modules import named_modules, replace_module, selector


class LoRALinear(Module):
    """y = x W + b + s (x A) B,  s = alpha / r;  W: (in, out), A: (in, r), B: (r, out).

    Parameter names: the base layer's `weight` and `bias` keep their names (so a checkpoint
    of the base model still loads), plus `lora_A` and `lora_B`.
    """

    def __init__(self, base, r, alpha=None, rng=None, freeze_base=True):
        if not isinstance(base, Linear):
            raise TypeError(f"LoRALinear wraps a Linear layer, got {type(base).__name__}")
        n_in, n_out = base.weight.shape
        r = int(r)
        if not 1 <= r <= min(n_in, n_out):
            raise ValueError(f"LoRA rank r={r} must be in [1, min(in, out)] = [1, {min(n_in, n_out)}] "
                             f"for a ({n_in}, {n_out}) weight: a larger rank is no longer low-rank "
                             "(and costs more than the full matrix)")
        self.r = r
        self.alpha = float(r if alpha is None else alpha)
        self.scaling = self.alpha / r                        # s = alpha / r
        self.weight, self.bias = base.weight, base.bias      # the frozen base, shared not copied
        self.freeze_base = freeze_base
        xp, dtype = get_xp(base.weight.data), base.weight.data.dtype
        rng = host_rng(0) if rng is None else rng
        bound = 1.0 / math.sqrt(n_in)                        # Kaiming-uniform with a = sqrt(5), as PEFT
        self.lora_A = Parameter(xp.asarray(rng.uniform(-bound, bound, (n_in, r)).astype(dtype)))  # (in, r)
        self.lora_B = Parameter(xp.zeros((r, n_out), dtype=dtype))                               # (r, out)
        self.cache = None

    def own_parameters(self):
        base = [("weight", self.weight)] + ([("bias", self.bias)] if self.bias is not None else [])
        return base + [("lora_A", self.lora_A), ("lora_B", self.lora_B)]

    def forward(self, x):                                    # (..., in) -> (..., out)
        out, _ = linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)
        u = x @ self.lora_A.data                             # (..., r)
        out += self.scaling * (u @ self.lora_B.data)         # (..., out)
        self.cache = (x, u)
        return out

    def backward(self, dout):                                # (..., out) -> (..., in)
        """With N rows (the leading axes flattened) and s = alpha / r:

            dB = s u^T dout               (u = x A)
            du = s dout B^T               dA = x^T du
            dx = dout W^T + du A^T
            dW = x^T dout, db = sum_N dout   only when freeze_base=False
        """
        x, u = self._check_cache()
        n_in, n_out = self.weight.shape
        x2, u2 = x.reshape(-1, n_in), u.reshape(-1, self.r)  # (N, in), (N, r)
        d2 = dout.reshape(-1, n_out)                         # (N, out)
        # undo: out += s * (u @ B)
        self.lora_B.grad += self.scaling * (u2.T @ d2)       # (r, out)
        du = self.scaling * (d2 @ self.lora_B.data.T)        # (N, r)
        # undo: u = x @ A
        self.lora_A.grad += x2.T @ du                        # (in, r)
        dx = du @ self.lora_A.data.T                         # (N, in)
        # undo: out = x W + b   (the frozen base: only the input gradient)
        dx += d2 @ self.weight.data.T
        if not self.freeze_base:
            self.weight.grad += x2.T @ d2
            if self.bias is not None:
                self.bias.grad += d2.sum(axis=0)
        return dx.reshape(x.shape)

    def merged_weight(self):
        """W + s A B: the single matrix that computes the same map."""
        return self.weight.data + self.scaling * (self.lora_A.data @ self.lora_B.data)

    def to_linear(self):
        """A plain Linear with the adapter merged in (the base Parameters are reused)."""
        n_in, n_out = self.weight.shape
        lin = Linear(n_in, n_out, bias=self.bias is not None, dtype=self.weight.data.dtype)
        lin.weight, lin.bias = self.weight, self.bias
        lin.weight.data = self.merged_weight()
        return lin


def apply_lora(model, r=8, alpha=None, targets=None, seed=0):
    """Replace the selected Linear layers of `model` by LoRALinear, in place; returns the
    names replaced.

    targets: None for every Linear inside the Transformer blocks (GPT: c_attn, attn.c_proj,
    c_fc, mlp.c_proj; BERT: query, key, value, attention.output.dense, intermediate.dense,
    output.dense), or name fragments such as ("query", "value") (see `modules.selector`).
    """
    rng = host_rng(seed)
    pick = selector(model, targets)
    chosen = [(name, m, parent) for name, m, parent in named_modules(model)
              if isinstance(m, Linear) and parent is not None and pick(name, m)]
    if not chosen:
        raise ValueError(f"no Linear layer of {type(model).__name__} matches targets={targets!r}")
    for name, m, parent in chosen:
        replace_module(parent, m, LoRALinear(m, r, alpha, rng))
    return [name for name, _, _ in chosen]


def lora_parameters(model):
    """The adapters' Parameters (every lora_A and lora_B), the list to give the optimiser."""
    return [p for name, p in model.named_parameters() if name.endswith(("lora_A", "lora_B"))]


def merge_lora(model):
    """Replace every LoRALinear by a Linear holding W + (alpha / r) A B; returns the model."""
    for name, m, parent in list(named_modules(model)):
        if isinstance(m, LoRALinear):
            replace_module(parent, m, m.to_linear())
    return model


def parameter_report(model, trainable):
    """{"trainable": n, "total": N, "percent": 100 n / N} for a list of trainable Parameters."""
    total = model.num_parameters()
    n = sum(int(p.size) for p in trainable)
    return {"trainable": n, "total": total, "percent": 100.0 * n / total}
