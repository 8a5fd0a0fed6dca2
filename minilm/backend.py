"""The NumPy / CuPy switch: the one piece of module-level state in minilm.

Compute code never imports NumPy. It asks its inputs which array module owns them,
``xp = get_xp(x)``, and spells everything as ``xp.something``. Only constructors (parameter
initialisation, batches coming in from ``minilm.data``) call ``get_xp()`` with no arguments,
which returns the active backend.

    import minilm
    minilm.set_backend("cupy")      # or MINILM_BACKEND=cupy in the environment
    minilm.get_backend()            # "cupy"

CuPy is optional and imported lazily, the first time it is asked for. The third backend,
"strict" (minilm/strict.py), is NumPy underneath with CuPy's rules on top: no implicit
conversion to NumPy, no mixing of host and device arrays, and every read of a device value
on the host counted (`host_transfers()`), so the GPU discipline is tested on any machine.
"""
import os

import numpy as np

from minilm import strict as _strict

_BACKENDS = ("numpy", "cupy", "strict")
_active = None          # the backend name; set on first use from MINILM_BACKEND
_cupy = None            # the cupy module once imported successfully


def _import_cupy():
    """Import CuPy and check that a GPU answers; raise RuntimeError with the reason if not."""
    global _cupy
    if _cupy is not None:
        return _cupy
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError("the 'cupy' backend needs CuPy: pip install cupy-cuda12x "
                           f"(or the wheel for your CUDA version); import failed with: {e}") from e
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDA driver missing, no device, ...
        raise RuntimeError(f"CuPy is installed but no CUDA device is usable: {e}") from e
    if n < 1:
        raise RuntimeError("CuPy is installed but no CUDA device was found")
    _cupy = cupy
    return cupy


def cupy_available():
    """(True, "") when the cupy backend can be used, else (False, reason)."""
    try:
        _import_cupy()
        return True, ""
    except RuntimeError as e:
        return False, str(e)


def set_backend(name):
    """Create new arrays with "numpy", "cupy" or "strict" from now on."""
    global _active
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {_BACKENDS}")
    if name == "cupy":
        _import_cupy()
    _active = name


def get_backend():
    """The active backend's name: "numpy", "cupy" or "strict"."""
    global _active
    if _active is None:
        name = os.environ.get("MINILM_BACKEND", "numpy").strip().lower() or "numpy"
        set_backend(name)
    return _active


def get_xp(*arrays):
    """The array module that owns `arrays`; the active backend when called with none."""
    if arrays:
        for a in arrays:
            if type(a) is _strict.StrictArray:
                return _strict
        if _cupy is not None:
            for a in arrays:
                if isinstance(a, _cupy.ndarray):
                    return _cupy
        return np
    name = get_backend()
    return _cupy if name == "cupy" else _strict if name == "strict" else np


def on_device(x):
    """True for a CuPy array or a strict (device-standing) one, False for NumPy's: for code
    that must do a thing differently on a GPU (not what it computes, how)."""
    return type(x) is _strict.StrictArray or (_cupy is not None and isinstance(x, _cupy.ndarray))


def row_blocks(x, block_bytes=1 << 18):
    """Slices of the rows of a 2-D array, about `block_bytes` each; one slice on a GPU.

    A chain of elementwise operations over a large array is limited by memory traffic:
    each operation streams the whole array through the caches again. Done a block of rows
    at a time, the chain's temporaries stay in the CPU's cache and only its inputs and
    outputs travel (the tiling that BLAS does for matrix products). A GPU wants the
    opposite: as few, as large kernels as possible.
    """
    if on_device(x):
        return [slice(None)]
    step = max(1, block_bytes // max(1, x.shape[-1] * x.itemsize))
    return [slice(i, i + step) for i in range(0, x.shape[0], step)]


def to_numpy(a):
    """Host (NumPy) copy of any backend array; Python scalars and lists pass through np.asarray.

    A strict array comes back as a copy (as from a GPU), counted as a host transfer."""
    if type(a) is _strict.StrictArray:
        return a.get()
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def host_transfers():
    """How many times device data was read on the host under the strict backend (to_numpy,
    .get(), float/int/bool/.item(), format, ...) since the last reset_host_transfers().

    Only strict arrays are counted: CuPy's own conversions are not seen here.
        reset_host_transfers(); trainer.fit(...); assert host_transfers() == expected
    """
    return _strict.transfer_count()


def reset_host_transfers():
    """Set the host-transfer count to zero and clear its log."""
    _strict.reset_transfers()


def host_transfer_log():
    """The latest host transfers (up to 256) as (kind, "file:line in function") pairs, oldest
    first: where a test that counts transfers looks when the count is off."""
    return _strict.transfer_log()


def asarray(a, dtype=None):
    """Move `a` (list, NumPy or CuPy array) onto the active backend."""
    xp = get_xp()
    if xp is np:
        return np.asarray(to_numpy(a), dtype=dtype)
    if xp is _strict and _cupy is not None and isinstance(a, _cupy.ndarray):
        a = _cupy.asnumpy(a)
    return xp.asarray(a, dtype=dtype)


def resolve_dtype(dtype):
    """Accept "float32" / "float64" (or the NumPy dtypes) and return the NumPy dtype.

    float16 is refused on purpose: models are built in float32 (or float64 for gradient
    checks), and float16 training is mixed precision, where the float32 weights stay the
    model and the optimiser's master copy and float16 is only the forward/backward's
    working copy (`Trainer(precision="fp16")`, minilm/training/precision.py). A model built
    in float16 would have no float32 weights to update; the ops themselves take float16
    arrays (see minilm/ops/linear.py: half_matmul)."""
    dt = np.dtype(dtype)
    if dt == np.float16:
        raise ValueError("models are built in float32 or float64; for float16 training use "
                         "mixed precision: Trainer(..., precision='fp16') or "
                         "python -m minilm train --precision fp16")
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def host_rng(seed):
    """A NumPy Generator for host-side randomness (initialisation, data order, sampling),
    so that one seed gives the same numbers on every backend."""
    return np.random.default_rng(seed)


class CounterRNG:
    """Dropout's random numbers on a device, with a state of two integers (seed, counter).

    CuPy's Generators keep their state in device memory and cannot save it ("random states
    cannot be serialized", CuPy's documentation), so a checkpoint could not resume a run
    with dropout exactly, and data parallelism could not replay or hand over a dropout
    stream. This generator is counter-based, as PyTorch's Philox on CUDA is (seed plus
    offset): the k-th number of the stream is a fixed function of (seed, k),

        z_k = seed + k * 0x9E3779B97F4A7C15          (mod 2^64, k = 1, 2, ...)
        u_k = SplitMix64 finaliser of z_k, top 24 bits (float32) or 53 bits (float64) / 2^bits

    so a draw of n numbers is n independent hashes (one elementwise chain on the GPU, no
    state in device memory) and the state is just how many numbers were drawn. It is
    SplitMix64 (Steele, Lea and Flood, 2014): the same numbers on every backend, and
    `state` is a JSON-able dict that checkpoints save. On NumPy, models keep NumPy's PCG64
    Generator (four times faster on a CPU); `new_dropout_rng(seed)` picks.

    Offers what the dropout layers and minilm.dist use: random(size, dtype) and
    bit_generator.state (get and set), as a NumPy Generator does.
    """

    _GAMMA, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
    KIND = "minilm.CounterRNG(SplitMix64)"

    def __init__(self, seed, xp=None):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"CounterRNG: seed must be an int, got {type(seed).__name__}")
        self.xp = xp if xp is not None else get_xp()
        self.seed = int(seed) % 2**64
        self.counter = 0                       # numbers drawn so far

    @property
    def bit_generator(self):
        return self                            # numpy's spelling: gen.bit_generator.state

    @property
    def state(self):
        return {"bit_generator": self.KIND, "seed": self.seed, "counter": self.counter}

    @state.setter
    def state(self, value):
        kind = value.get("bit_generator") if isinstance(value, dict) else None
        if kind != self.KIND:
            raise ValueError(
                f"dropout RNG state of another kind ({kind!r}): this model draws its dropout "
                f"masks from {self.KIND} (the {_backend_name(self.xp)} backend), and the state "
                "was saved by another generator (NumPy's PCG64 is the numpy backend's); resume "
                "on the backend that saved it")
        seed, counter = value.get("seed"), value.get("counter")
        for name, v in (("seed", seed), ("counter", counter)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
                raise ValueError(f"dropout RNG state: {name} must be an int in [0, 2^64), got {v!r}")
        self.seed, self.counter = seed, counter

    def random(self, size=None, dtype="float64"):
        """Uniform numbers in [0, 1): float64 (53 random bits) or float32 (24 bits)."""
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"CounterRNG.random: dtype must be float32 or float64, got {dt}")
        shape = () if size is None else (tuple(size) if isinstance(size, (tuple, list)) else (size,))
        n = int(np.prod(shape, dtype=np.int64))
        xp, u64 = self.xp, np.uint64
        k = xp.arange(self.counter + 1, self.counter + 1 + n, dtype=u64)
        self.counter += n
        z = k * u64(self._GAMMA)               # wraps modulo 2^64, as intended
        z += u64(self.seed)
        z ^= z >> u64(30)
        z *= u64(self._M1)
        z ^= z >> u64(27)
        z *= u64(self._M2)
        z ^= z >> u64(31)
        bits = 24 if dt == np.float32 else 53
        u = (z >> u64(64 - bits)).astype(dt)
        u *= dt.type(2.0 ** -bits)
        return u.reshape(shape)


def _backend_name(xp):
    return "numpy" if xp is np else "strict" if xp is _strict else "cupy"


def new_dropout_rng(seed):
    """The Generator a model's dropout layers draw from, on the active backend: NumPy's
    PCG64 on NumPy; a CounterRNG on CuPy and on the strict backend (whose state a
    checkpoint can save, which CuPy's own Generators cannot)."""
    xp = get_xp()
    return np.random.default_rng(seed) if xp is np else CounterRNG(seed, xp)


def random_normal(rng, shape, std, dtype):
    """N(0, std^2) drawn on the host from `rng`, cast to dtype, moved to the active backend."""
    return get_xp().asarray((rng.standard_normal(shape) * std).astype(resolve_dtype(dtype)))


def full(shape, value, dtype):
    """A constant array on the active backend."""
    return get_xp().full(shape, value, dtype=resolve_dtype(dtype))


def as_host_array(a):
    """Lists and tuples become NumPy arrays; backend arrays pass through unchanged."""
    return np.asarray(a) if isinstance(a, (list, tuple, int, float)) else a


HOST_INT64 = np.int64
