"""Int8 quantisation: post-training (PTQ) and quantisation-aware training (QAT).

A float tensor w is stored as 8-bit integers q and a float scale s (and an integer zero
point z for the asymmetric scheme):

    symmetric:   q = clip(round(w / s), -127, 127),          s = max|w| / 127,      w ~ s q
    asymmetric:  q = clip(round(w / s) + z, -128, 127),      s = (max w - min w) / 255,
                 z = round(-128 - min w / s),                w ~ s (q - z)

(the ranges include 0, so that 0 is stored exactly). Per-tensor: one s for the whole matrix.
Per-channel: one s per output column of a Linear weight (in, out), or per row (per token) of
an embedding table (V, C); an outlier then spoils only its own channel. Each weight takes 1
byte instead of 4, so a checkpoint shrinks about 4x (`save_quantized` writes real int8
tensors into safetensors).

The integer matmul (`QuantizedLinear`, matmul="int32"): activations are quantised on the fly,
one symmetric scale per row, s_x = max|x_row| / 127, then

    x W ~ (s_x q_x) (s_w (q_w - z_w)) = s_x s_w (q_x q_w - z_w sum_k q_x[k])

where q_x q_w is int8 x int8 products summed in int32. The sum can't overflow: each product
is at most 127 * 128 = 16256 in size, so K of them stay below 2^31 for K < 132,000 inputs,
far more than any layer here. NumPy has no BLAS for integers (its int matmul is ~15x slower
than float), so matmul="float64" computes the *same* integer sums with a float64 BLAS call:
every partial sum is an integer below 2^53 and so is exact (the tests check both agree bit
for bit).

QAT trains through the rounding with the straight-through estimator (Bengio et al. 2013):
the forward pass uses the fake-quantised tensor s (clip(round(w / s) + z) - z), the backward
pass treats round() as the identity, so the gradient passes unchanged where w is inside the
clip range and is zero where the clip cut it off.

    quantize_model(model, scheme="symmetric", granularity="per_channel")   # PTQ, in place
    save_quantized(model, folder); model2 = load_quantized(folder)
    prepare_qat(model); ...train...; convert_qat(model)                    # QAT, then int8
"""
import dataclasses
import json
import os

from ...backend import get_xp
from ...io import (CONFIG_NAME, WEIGHTS_NAME, atomic_folder, load_safetensors, resolve_folder,
                  save_safetensors, write_json)
from ...layers import Embedding, Linear, Module, Parameter
from .modules import named_modules, replace_module, selector

SCHEMES = ("symmetric", "asymmetric")
GRANULARITIES = ("per_tensor", "per_channel")


# ----------------------------------------------------------------------------------------
# Quantising one tensor
# ----------------------------------------------------------------------------------------

def qrange(bits, symmetric):
    """(qmin, qmax) for signed integers of `bits` bits (symmetric drops -2^(bits-1))."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in [2, 8] (values are stored in int8), got {bits}")
    qmax = 2 ** (bits - 1) - 1
    return (-qmax if symmetric else -qmax - 1), qmax


def quant_params(w, symmetric=True, axis=None, bits=8):
    """Scale and zero point for w. axis=None: per tensor; else reduce over every axis but
    `axis` (axis=-1: one scale per output column of a (in, out) weight; axis=0: per row).

    Returns (scale, zero_point), float and int arrays shaped to broadcast against w.
    """
    xp = get_xp(w)
    qmin, qmax = qrange(bits, symmetric)
    reduce = None if axis is None else tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    if symmetric:
        amax = xp.abs(w).max(axis=reduce, keepdims=True)                       # max|w|
        scale = amax / qmax
        zero = xp.zeros(scale.shape, dtype=xp.int32)
    else:
        lo = xp.minimum(w.min(axis=reduce, keepdims=True), 0.0)                # range includes 0
        hi = xp.maximum(w.max(axis=reduce, keepdims=True), 0.0)
        scale = (hi - lo) / (qmax - qmin)
        safe = xp.where(scale > 0, scale, 1.0)
        zero = xp.clip(xp.round(qmin - lo / safe), qmin, qmax).astype(xp.int32)   # z = round(qmin - min/s)
    scale = xp.where(scale > 0, scale, 1.0).astype(w.dtype)                    # an all-zero channel: any s
    if axis is None:
        scale, zero = scale.reshape((1,) * w.ndim), zero.reshape((1,) * w.ndim)
    return scale, zero


def quantize(w, scale, zero_point, bits=8, symmetric=True):
    """q = clip(round(w / s) + z, qmin, qmax) as int8."""
    xp = get_xp(w)
    qmin, qmax = qrange(bits, symmetric)
    return xp.clip(xp.round(w / scale) + zero_point, qmin, qmax).astype(xp.int8)


def dequantize(q, scale, zero_point, dtype=None):
    """w ~ s (q - z), in the scale's float dtype."""
    return scale * (q.astype(scale.dtype if dtype is None else dtype) - zero_point)


def quantize_rows(x):
    """Dynamic symmetric int8 quantisation of activations, one scale per row (last axis).

    x: (N, K) float -> q_x (N, K) int8, s_x (N, 1):  s_x = max|x_row| / 127, q_x = round(x / s_x)
    """
    xp = get_xp(x)
    s = xp.abs(x).max(axis=-1, keepdims=True) / 127.0                          # (N, 1)
    s = xp.where(s > 0, s, 1.0)
    return xp.clip(xp.round(x / s), -127, 127).astype(xp.int8), s


def int8_matmul(qa, qb, accumulate="int32"):
    """(N, K) int8 @ (K, M) int8 -> (N, M) int32, the exact integer sums.

    accumulate="int32": integer arithmetic (NumPy's non-BLAS loop); "float64": the same
    integers from a float64 BLAS product (exact, since |sums| <= K * 16256 < 2^53).
    """
    xp = get_xp(qa)
    if accumulate == "int32":
        return qa.astype(xp.int32) @ qb.astype(xp.int32)
    if accumulate == "float64":
        return (qa.astype(xp.float64) @ qb.astype(xp.float64)).astype(xp.int32)
    raise ValueError(f"accumulate must be 'int32' or 'float64', got {accumulate!r}")


# ----------------------------------------------------------------------------------------
# Fake quantisation with the straight-through estimator (QAT)
# ----------------------------------------------------------------------------------------

def fake_quant_forward(w, scale, zero_point, qmin, qmax, rounding=True):
    """w, scale, zero_point broadcastable  ->  out: w's shape

        v   = w / s + z
        out = s (clip(round(v), qmin, qmax) - z)
    rounding=False drops round(): the smooth function whose true derivative *is* the
    straight-through estimate below, so a finite-difference check can test the backward.
    """
    xp = get_xp(w)
    v = w / scale + zero_point
    inside = (v >= qmin) & (v <= qmax)                                          # the clip range
    r = xp.round(v) if rounding else v
    out = scale * (xp.clip(r, qmin, qmax) - zero_point)
    return out, inside


def fake_quant_backward(dout, cache):
    """Straight-through estimator: d round(v)/dv := 1, so

        dw = dout    where qmin <= w / s + z <= qmax     (inside the clip range)
        dw = 0       outside (the clip is flat there)
    The scale and zero point are treated as constants (computed from the data, not learned).
    """
    inside = cache
    return dout * inside


class QATLinear(Module):
    """y = fq(x) fq(W) + b while training: fake-quantised weights (per-channel or per-tensor,
    symmetric or not) and activations (dynamic, symmetric, per row), float arithmetic,
    straight-through gradients. `convert()` gives the QuantizedLinear that computes the same
    thing with int8 storage. `weight_clip` < 1.0 clips each channel at that quantile of |W|
    (instead of max|W|), trading clipping error for resolution; the STE then zeroes the
    gradient of the clipped weights.
    """

    def __init__(self, base, scheme="symmetric", granularity="per_channel", bits=8,
                 quantize_activations=True, weight_clip=1.0, rounding=True):
        _check_scheme(scheme, granularity)
        self.weight, self.bias = base.weight, base.bias       # trained in float, same names
        self.scheme, self.granularity, self.bits = scheme, granularity, bits
        self.quantize_activations = quantize_activations
        self.weight_clip = weight_clip
        self.rounding = rounding                              # False: the smooth surrogate (gradcheck)
        self.cache = None

    def own_parameters(self):
        return [("weight", self.weight)] + ([("bias", self.bias)] if self.bias is not None else [])

    def weight_qparams(self):
        W = self.weight.data
        axis = -1 if self.granularity == "per_channel" else None
        symmetric = self.scheme == "symmetric"
        if self.weight_clip >= 1.0:
            return quant_params(W, symmetric, axis, self.bits)
        xp = get_xp(W)
        qmin, qmax = qrange(self.bits, symmetric)
        reduce = 0 if axis is not None else None
        c = xp.quantile(xp.abs(W), self.weight_clip, axis=reduce, keepdims=True)   # clip level
        c = xp.where(c > 0, c, 1.0).astype(W.dtype)
        c = c if axis is not None else c.reshape(1, 1)
        if symmetric:
            return c / qmax, xp.zeros(c.shape, dtype=xp.int32)
        return 2 * c / (qmax - qmin), xp.zeros(c.shape, dtype=xp.int32)   # range [-c, c]

    def forward(self, x):                                     # (..., in) -> (..., out)
        xp = get_xp(x)
        n_in, n_out = self.weight.shape
        x2 = x.reshape(-1, n_in)                              # (N, in)
        if self.quantize_activations:
            # the dynamic scale covers each row's max|x|, so nothing is clipped: the STE
            # passes dx through unchanged (the mask would be all ones, up to round-off at the max)
            s_x = xp.abs(x2).max(axis=-1, keepdims=True) / 127.0
            s_x = xp.where(s_x > 0, s_x, 1.0)                 # (N, 1), a constant for backward
            x2, _ = fake_quant_forward(x2, s_x, 0, -127, 127, self.rounding)
        s_w, z_w = self.weight_qparams()
        qmin, qmax = qrange(self.bits, self.scheme == "symmetric")
        Wq, w_cache = fake_quant_forward(self.weight.data, s_w, z_w, qmin, qmax, self.rounding)
        out = x2 @ Wq                                         # (N, out)
        if self.bias is not None:
            out += self.bias.data
        self.cache = (x2, Wq, w_cache, x.shape)
        return out.reshape(*x.shape[:-1], n_out)

    def backward(self, dout):                                 # (..., out) -> (..., in)
        """dW = (x_q^T dout) * [W inside the clip range],  db = sum_N dout,  dx = dout W_q^T."""
        x2, Wq, w_cache, shape = self._check_cache()
        d2 = dout.reshape(-1, Wq.shape[1])                    # (N, out)
        # undo: out = x_q W_q + b
        self.weight.grad += fake_quant_backward(x2.T @ d2, w_cache)
        if self.bias is not None:
            self.bias.grad += d2.sum(axis=0)
        dx = d2 @ Wq.T                                        # (N, in)
        # undo: x_q = fq(x)   (straight through: nothing was clipped)
        return dx.reshape(shape)

    def convert(self):
        """The int8 QuantizedLinear with this layer's quantisation of the current weights."""
        s_w, z_w = self.weight_qparams()
        q = quantize(self.weight.data, s_w, z_w, self.bits, self.scheme == "symmetric")
        return QuantizedLinear(q, s_w, z_w, self.bias, self.scheme, self.granularity, self.bits,
                               quantize_activations=self.quantize_activations)


# ----------------------------------------------------------------------------------------
# Int8 layers for inference
# ----------------------------------------------------------------------------------------

def _int8_param(q, name):
    """An int8 (or int32 zero point) tensor held as a Parameter, so that named_parameters,
    state_dict, load_state_dict and num_parameters see it. It is not trainable: no backward
    writes its .grad, and optimisers must not be given it."""
    return Parameter(q, name=name)


class QuantizedLinear(Module):
    """y = x W + b with W stored as int8 q (in, out), scale s and zero point z.

    matmul="int32" / "float64": quantise x per row and run the integer product (see the
    module docstring), then y = s_x s_w (acc - z_w rowsum(q_x)) + b.
    matmul="dequant": weight-only quantisation, y = x (s_w (q - z_w)) + b in float.
    Parameters: `weight` (int8), `weight_scale` (float), `weight_zero_point` (int32, only
    for the asymmetric scheme), `bias` (float, kept as is).
    backward gives dx (through the dequantised weight; activation rounding is passed straight
    through), so a quantised model can still pass gradients to layers before it; it adds
    nothing to the int8 weight.
    """

    def __init__(self, q, scale, zero_point, bias, scheme, granularity, bits=8,
                 quantize_activations=True, matmul="int32"):
        self.qweight = _int8_param(q, "weight")                            # (in, out) int8
        self.weight_scale = Parameter(scale)                               # (1, out) or (1, 1)
        self.weight_zero_point = Parameter(zero_point) if scheme == "asymmetric" else None
        self.bias = bias
        self.scheme, self.granularity, self.bits = scheme, granularity, bits
        self.quantize_activations = quantize_activations
        self.matmul = matmul
        self.cache = None

    @classmethod
    def from_linear(cls, linear, scheme="symmetric", granularity="per_channel", bits=8, **kw):
        W = linear.weight.data
        scale, zero = quant_params(W, scheme == "symmetric", -1 if granularity == "per_channel" else None, bits)
        return cls(quantize(W, scale, zero, bits, scheme == "symmetric"), scale, zero, linear.bias,
                   scheme, granularity, bits, **kw)

    def own_parameters(self):
        out = [("weight", self.qweight), ("weight_scale", self.weight_scale)]
        if self.weight_zero_point is not None:
            out.append(("weight_zero_point", self.weight_zero_point))
        return out + ([("bias", self.bias)] if self.bias is not None else [])

    def zero_point(self):
        return 0 if self.weight_zero_point is None else self.weight_zero_point.data

    def dequantized_weight(self):
        return dequantize(self.qweight.data, self.weight_scale.data, self.zero_point())

    def forward(self, x):                                     # (..., in) -> (..., out)
        n_in, n_out = self.qweight.shape
        x2 = x.reshape(-1, n_in)                              # (N, in)
        if self.matmul == "dequant" or not self.quantize_activations:
            out = x2 @ self.dequantized_weight().astype(x.dtype)             # (N, out)
        else:
            qx, s_x = quantize_rows(x2)                                      # (N, in) int8, (N, 1)
            acc = int8_matmul(qx, self.qweight.data, self.matmul)            # (N, out) int32
            if self.weight_zero_point is not None:                           # - z_w sum_k q_x[k]
                acc -= qx.astype(acc.dtype).sum(axis=1, keepdims=True) * self.weight_zero_point.data
            out = acc.astype(x.dtype) * (s_x * self.weight_scale.data).astype(x.dtype)   # (N, out)
        if self.bias is not None:
            out += self.bias.data
        self.cache = (x.shape,)
        return out.reshape(*x.shape[:-1], n_out)

    def backward(self, dout):                                 # dx only: the int8 weight is frozen
        (shape,) = self._check_cache()
        W = self.dequantized_weight().astype(dout.dtype)
        if self.bias is not None:
            self.bias.grad += dout.reshape(-1, W.shape[1]).sum(axis=0)
        return (dout.reshape(-1, W.shape[1]) @ W.T).reshape(shape)


class _DequantizedView:
    """What `QuantizedEmbedding.weight` returns: `.data` is the float table s (q - z),
    rebuilt on each access, for code that reads the table directly (GPT's tied LM head
    computes h @ wte.weight.data^T). `.grad` is a scratch array nobody reads."""

    def __init__(self, emb):
        self.data = emb.dequantized_weight()
        self.grad = get_xp(self.data).zeros_like(self.data)
        self.shape = self.data.shape


class QuantizedEmbedding(Module):
    """Lookup in an int8 table: out[i] = s[ids[i]] (q[ids[i]] - z[ids[i]]) (per-row scales),
    or one scale for the table (per-tensor)."""

    def __init__(self, q, scale, zero_point, scheme, granularity, bits=8):
        self.qweight = _int8_param(q, "weight")                            # (V, C) int8
        self.weight_scale = Parameter(scale)                               # (V, 1) or (1, 1)
        self.weight_zero_point = Parameter(zero_point) if scheme == "asymmetric" else None
        self.scheme, self.granularity, self.bits = scheme, granularity, bits
        self.cache = None

    @classmethod
    def from_embedding(cls, emb, scheme="symmetric", granularity="per_channel", bits=8):
        W = emb.weight.data
        scale, zero = quant_params(W, scheme == "symmetric", 0 if granularity == "per_channel" else None, bits)
        return cls(quantize(W, scale, zero, bits, scheme == "symmetric"), scale, zero, scheme,
                   granularity, bits)

    def own_parameters(self):
        out = [("weight", self.qweight), ("weight_scale", self.weight_scale)]
        return out + ([("weight_zero_point", self.weight_zero_point)]
                      if self.weight_zero_point is not None else [])

    @property
    def weight(self):
        return _DequantizedView(self)

    def dequantized_weight(self):
        z = 0 if self.weight_zero_point is None else self.weight_zero_point.data
        return dequantize(self.qweight.data, self.weight_scale.data, z)

    def forward(self, ids):                                   # (...) ints -> (..., C)
        s = self.weight_scale.data
        s = s[ids] if s.shape[0] > 1 else s[0]                               # (..., 1) or (1,)
        z = 0
        if self.weight_zero_point is not None:
            z = self.weight_zero_point.data
            z = z[ids] if z.shape[0] > 1 else z[0]
        self.cache = (ids,)
        return s * (self.qweight.data[ids].astype(s.dtype) - z)

    def backward(self, dout):                                 # frozen: nothing to accumulate
        self._check_cache()
        return None


# ----------------------------------------------------------------------------------------
# Whole models
# ----------------------------------------------------------------------------------------

_QUANTIZED = (QuantizedLinear, QuantizedEmbedding, QATLinear)


def _check_scheme(scheme, granularity):
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


def _refuse_twice(model):
    for name, m, _ in named_modules(model):
        if isinstance(m, _QUANTIZED):
            raise ValueError(f"{type(model).__name__} is already quantised ({name or 'the model'} "
                             f"is a {type(m).__name__}); quantising twice would round the rounded "
                             "weights again: start from the float model")


def quantize_model(model, scheme="symmetric", granularity="per_channel", bits=8, targets=None,
                   embeddings=True, matmul="int32", quantize_activations=True):
    """Post-training quantisation, in place: every selected Linear becomes a QuantizedLinear
    and (embeddings=True) every Embedding a QuantizedEmbedding. Returns the model.

    targets: which Linear layers (None: all of them, task heads included; or name fragments,
    see `modules.selector`). LayerNorms and biases stay float: they are a tiny fraction of the
    weights. A model that is already quantised raises ValueError.
    """
    _check_scheme(scheme, granularity)
    qrange(bits, scheme == "symmetric")
    _refuse_twice(model)
    count = 0
    for name, m, parent in list(named_modules(model)):
        if parent is None:
            continue
        if isinstance(m, Linear) and (targets is None or selector(model, targets)(name, m)):
            replace_module(parent, m, QuantizedLinear.from_linear(
                m, scheme, granularity, bits, quantize_activations=quantize_activations, matmul=matmul))
            count += 1
        elif isinstance(m, Embedding) and embeddings:
            replace_module(parent, m, QuantizedEmbedding.from_embedding(m, scheme, granularity, bits))
            count += 1
    if count == 0:
        raise ValueError(f"no layer of {type(model).__name__} was selected for quantisation")
    model.quantization_config = {"scheme": scheme, "granularity": granularity, "bits": bits,
                                 "targets": None if targets is None else list(targets),
                                 "embeddings": embeddings, "quantize_activations": quantize_activations}
    return model


def set_matmul(model, matmul):
    """Switch every QuantizedLinear between "int32", "float64" (same numbers) and "dequant"."""
    for m in model.modules():
        if isinstance(m, QuantizedLinear):
            m.matmul = matmul
    return model


def prepare_qat(model, scheme="symmetric", granularity="per_channel", bits=8, targets=None,
                quantize_activations=True, weight_clip=1.0):
    """Quantisation-aware training: swap the selected Linear layers for QATLinear, in place.
    Train as usual (the optimiser sees the same float Parameters), then `convert_qat`."""
    _check_scheme(scheme, granularity)
    _refuse_twice(model)
    for name, m, parent in list(named_modules(model)):
        if parent is not None and isinstance(m, Linear) and (targets is None or selector(model, targets)(name, m)):
            replace_module(parent, m, QATLinear(m, scheme, granularity, bits, quantize_activations,
                                                weight_clip))
    return model


def convert_qat(model, embeddings=False):
    """Replace each QATLinear by its int8 QuantizedLinear (and optionally quantise the
    embeddings post-training)."""
    cfg = None
    for name, m, parent in list(named_modules(model)):
        if isinstance(m, QATLinear):
            replace_module(parent, m, m.convert())
            cfg = {"scheme": m.scheme, "granularity": m.granularity, "bits": m.bits,
                   "quantize_activations": m.quantize_activations}
    if embeddings:
        for name, m, parent in list(named_modules(model)):
            if isinstance(m, Embedding):
                replace_module(parent, m, QuantizedEmbedding.from_embedding(
                    m, cfg["scheme"], cfg["granularity"], cfg["bits"]))
    model.quantization_config = dict(cfg or {}, targets=None, embeddings=embeddings, qat=True)
    return model


def weight_bytes(model):
    """Bytes of every tensor the model stores (int8 weights count 1 byte each)."""
    return int(sum(int(p.data.nbytes) for p in model.parameters()))


# ----------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------

def save_quantized(model, folder):
    """config.json (the model's config plus "quantization_config") + model.safetensors with
    int8 weights, float scales and int32 zero points. Returns the file size in bytes.

    These folders are minilm's own: `transformers` cannot read int8 tensors in this layout.
    """
    qcfg = getattr(model, "quantization_config", None)
    if qcfg is None:
        raise ValueError("this model is not quantised: call quantize_model(model) first")
    cfg = dataclasses.asdict(model.config)
    cfg.update(minilm_class=type(model).__name__, quantization_config=qcfg)
    with atomic_folder(folder) as tmp:                  # crash-safe, as save_pretrained
        write_json(os.path.join(tmp, CONFIG_NAME), cfg, indent=2, sort_keys=True)
        save_safetensors(os.path.join(tmp, WEIGHTS_NAME), model.state_dict())
    return os.path.getsize(os.path.join(folder, WEIGHTS_NAME))


def load_quantized(folder, dtype="float32", matmul="int32"):
    """Rebuild a model saved by `save_quantized`: the float model from its config, quantised
    with the same scheme (which makes the right layers), then the int8 tensors loaded."""
    from ... import models
    folder = resolve_folder(folder)
    with open(os.path.join(str(folder), CONFIG_NAME), encoding="utf-8") as f:
        cfg = json.load(f)
    cls = getattr(models, cfg.pop("minilm_class"))
    qcfg = cfg.pop("quantization_config")
    config_cls = models.GPTConfig if cls is models.GPT else models.BertConfig
    config = config_cls(**{k: v for k, v in cfg.items()
                           if k in {f.name for f in dataclasses.fields(config_cls)}})
    model = cls(config, dtype=dtype)
    if qcfg.get("qat"):
        prepare_qat(model, qcfg["scheme"], qcfg["granularity"], qcfg["bits"],
                    quantize_activations=qcfg["quantize_activations"])
        convert_qat(model, embeddings=qcfg["embeddings"])
    else:
        quantize_model(model, qcfg["scheme"], qcfg["granularity"], qcfg["bits"], qcfg["targets"],
                       qcfg["embeddings"], matmul, qcfg["quantize_activations"])
    model.load_state_dict(load_safetensors(os.path.join(str(folder), WEIGHTS_NAME)))
    set_matmul(model, matmul)
    return model.eval()
