"""Input validation shared by the models: clear Python errors instead of wrong answers."""
from ..backend import HOST_INT64, as_host_array, asarray, get_xp, to_numpy


def as_ids(name, ids, vocab_size=None, ndim=2, allow_ignore=False):
    """Check an integer id array and move it to the active backend.

    Accepts lists, NumPy or CuPy arrays. Raises TypeError for non-integer arrays and
    ValueError for the wrong rank or ids outside [0, vocab_size) (-100 allowed for labels).
    """
    host = as_host_array(ids)
    if host.dtype == object:
        raise TypeError(f"{name} must be a rectangular array of integers (ragged lists need padding)")
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


def same_shape(name, a, ref_name, ref):
    if tuple(a.shape) != tuple(ref.shape):
        raise ValueError(f"{name} shape {tuple(a.shape)} must equal {ref_name} shape {tuple(ref.shape)}")
