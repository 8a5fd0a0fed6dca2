"""Input validation shared by the models: clear Python errors instead of wrong answers."""
import math
import numbers

from ..backend import HOST_INT64, as_host_array, asarray, get_xp, to_numpy


def _rectangular(name, value, what):
    """`value` as a host array, or TypeError naming `name` when it is not one (or is ragged)."""
    try:
        host = as_host_array(value)
    except ValueError:                                  # NumPy 2 refuses ragged lists itself
        raise ValueError(f"{name} must be a rectangular array of {what} (ragged lists need padding)") from None
    if not hasattr(host, "dtype"):
        raise TypeError(f"{name} must be an array or a list of {what}, got {type(value).__name__} {value!r:.40}")
    if host.dtype == object:
        raise TypeError(f"{name} must be a rectangular array of {what} (ragged lists need padding)")
    return host


def as_ids(name, ids, vocab_size=None, ndim=2, allow_ignore=False):
    """Check an integer id array and move it to the active backend.

    Accepts lists, NumPy or CuPy arrays. Raises TypeError for non-integer arrays and
    ValueError for the wrong rank or ids outside [0, vocab_size) (-100 allowed for labels).
    """
    host = _rectangular(name, ids, "integers")
    if host.dtype.kind not in "iu":
        if host.size > 0 or host.dtype.kind == "b":
            raise TypeError(f"{name} must hold integers, got dtype {host.dtype}")
        host = host.astype(HOST_INT64)          # an empty list arrives as float64
    if host.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D "
                         f"{'(batch, sequence)' if ndim == 2 else ''}, got shape {tuple(host.shape)}")
    if vocab_size is not None and host.size:
        lo, hi = int(host.min()), int(host.max())
        if allow_ignore:
            valid = to_numpy(host)
            valid = valid[valid != -100]
            lo = int(valid.min()) if valid.size else 0
            hi = int(valid.max()) if valid.size else 0
        if lo < 0 or hi >= vocab_size:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} contains id {bad}, outside the vocabulary [0, {vocab_size})"
                             + (" (-100 marks ignored positions)" if allow_ignore else ""))
    return asarray(host).astype(get_xp().int64, copy=False)


def as_embeds(name, embeds, width, dtype):
    """Check a (B, T, C) float array of embeddings (`inputs_embeds`) and move it to the active
    backend in the model's dtype."""
    host = as_host_array(embeds)
    if not hasattr(host, "dtype") or host.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a float array (B, T, C), got {type(embeds).__name__}")
    if host.ndim != 3 or host.shape[-1] != width:
        raise ValueError(f"{name} must be (batch, sequence, {width}), got shape {tuple(host.shape)}")
    return asarray(host).astype(dtype, copy=False)


def hidden_grads(dhidden_states, n):
    """`backward(dhidden_states=...)`: a tuple aligned with out.hidden_states (n entries, None
    where that state does not enter the loss) -> a list of n arrays or None."""
    if dhidden_states is None:
        return [None] * n
    dhs = list(dhidden_states)
    if len(dhs) != n:
        raise ValueError(f"dhidden_states has {len(dhs)} entries; out.hidden_states has {n} "
                         "(pass None for the ones that do not enter the loss)")
    return dhs


def plus(a, b):
    """a + b where b (an extra upstream gradient) may be None; a fresh array, a and b untouched."""
    return a if b is None else a + asarray(b).astype(getattr(a, "dtype", None) or asarray(b).dtype, copy=False)


def same_shape(name, a, ref_name, ref):
    if tuple(a.shape) != tuple(ref.shape):
        raise ValueError(f"{name} shape {tuple(a.shape)} must equal {ref_name} shape {tuple(ref.shape)}")


# ---- configs ---------------------------------------------------------------------------------

def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_float(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _got(v):
    return f"got {v!r} ({type(v).__name__})"


def check_config(cfg, positive_ints=(), optional_positive_ints=(), ints=(), optional_ints=(),
                 probabilities=(), optional_probabilities=(), positive_floats=(),
                 nonnegative_floats=(), bools=()):
    """TypeError / ValueError naming the field and what it must be, for a config dataclass.

    Ints must be Python or NumPy integers (not bool, not "8", not 8.0); floats any finite
    real number; probabilities in [0, 1); `optional_*` may also be None.
    """
    cls = type(cfg).__name__

    def fail(name, expected, error=ValueError):
        raise error(f"{cls}.{name} must be {expected}, {_got(getattr(cfg, name))}")

    for name in positive_ints + optional_positive_ints:
        v = getattr(cfg, name)
        if v is None and name in optional_positive_ints:
            continue
        if not _is_int(v):
            fail(name, "a positive int" + (" or None" if name in optional_positive_ints else ""), TypeError)
        if v <= 0:
            fail(name, "a positive int")
    for name in ints + optional_ints:
        v = getattr(cfg, name)
        if not (_is_int(v) or (v is None and name in optional_ints)):
            fail(name, "an int" + (" or None" if name in optional_ints else ""), TypeError)
    for name in probabilities + optional_probabilities:
        v = getattr(cfg, name)
        if v is None and name in optional_probabilities:
            continue
        if not _is_float(v):
            fail(name, "a float in [0, 1)", TypeError)
        if not 0.0 <= v < 1.0:
            fail(name, "in [0, 1)")
    for name in positive_floats:
        v = getattr(cfg, name)
        if not _is_float(v):
            fail(name, "a finite float > 0", TypeError)
        if not v > 0:
            fail(name, "> 0")
    for name in nonnegative_floats:
        v = getattr(cfg, name)
        if not _is_float(v):
            fail(name, "a finite float >= 0", TypeError)
        if not v >= 0:
            fail(name, ">= 0")
    for name in bools:
        v = getattr(cfg, name)
        if not isinstance(v, bool):
            fail(name, "True or False", TypeError)


def require_config(model_name, config, config_cls):
    """TypeError naming the config class when a model is built from something else."""
    if isinstance(config, config_cls):
        return
    hint = (f"{config_cls.__name__}.from_dict(d)" if isinstance(config, dict)
            else f"{config_cls.__name__}(...)")
    raise TypeError(f"{model_name}(config) needs a {config_cls.__name__}, {_got(config)}: "
                    f"build one with {hint}, or load a checkpoint with "
                    f"{model_name}.from_pretrained(folder)")


# ---- attention masks -------------------------------------------------------------------------

def as_mask(name, mask, ids, ids_name="input_ids"):
    """Check an attention mask and return it as int64 0/1 on the active backend.

    Accepts integer, bool or float arrays (or lists) of 0 and 1 (1 = real token, 0 =
    padding), of the same shape as `ids`, as transformers does. An additive mask (0 for
    real tokens, a large negative number for padding) gets a ValueError saying how to
    convert it, instead of being read inverted; any other value is a ValueError too.
    """
    host = _rectangular(name, mask, "0/1")
    if host.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold 0/1 (int, bool or float), got dtype {host.dtype}")
    if host.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, sequence), got shape {tuple(host.shape)}")
    if tuple(host.shape) != tuple(ids.shape):
        raise ValueError(f"{name} shape {tuple(host.shape)} must equal {ids_name} shape {tuple(ids.shape)}")
    values = to_numpy(host)
    if values.dtype.kind != "b":
        bad = (values != 0) & (values != 1)
        if bad.any():
            real = values[bad]
            if (real < 0).all() and (values <= 0).all():
                raise ValueError(
                    f"{name} looks like an additive mask (0 = attend, {real.min():g} = padding); minilm "
                    f"takes transformers' 0/1 mask (1 = real token, 0 = padding). Convert it with "
                    f"mask = (additive == 0).astype(int)")
            raise ValueError(f"{name} contains {real.reshape(-1)[0].item()!r}, but it must hold only "
                             "0 and 1 (1 = real token, 0 = padding), or True/False")
    return asarray(host).astype(get_xp().int64)
