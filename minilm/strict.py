"""The "strict" backend: NumPy underneath, CuPy's rules on top.

Code that runs on NumPy can still break on a GPU: a device array handed to a NumPy function,
a host array mixed into a device expression, a Python loop that reads a device value back
every step. On NumPy all three are silent; on CuPy the first two raise TypeError and the
third quietly stalls the GPU. This backend makes all three visible on any machine:

    import minilm
    minilm.set_backend("strict")        # or MINILM_BACKEND=strict
    xp = minilm.get_xp()                # this module: xp.zeros, xp.exp, xp.matmul, ...
    a = xp.asarray(np.ones(3))          # the explicit way in (a copy, as a host-to-device copy is)
    np.exp(a)                           # TypeError: NumPy functions refuse device arrays
    a + np.ones(3)                      # TypeError: Unsupported type <class 'numpy.ndarray'>
    float(a.sum())                      # fine, and counted as one host transfer
    minilm.to_numpy(a), a.get()         # the explicit ways out (counted too)

Its arrays are `StrictArray`s (also spelled `ndarray` here, as `cupy.ndarray`): a wrapper
around a NumPy array that is not a NumPy array. This module is the array namespace `xp`
that `get_xp` returns for them; it holds only functions that CuPy has too, so code that
runs here finds its names on CuPy. Reductions return 0-d arrays, never NumPy scalars, as
CuPy's do: reading a value on the host is always an explicit `float()` / `int()` /
`bool()` / `.item()` / `.tolist()`.

The rules, checked against CuPy 14 on an H200 (what CuPy does is in brackets where the
strict backend differs on purpose):

- `numpy.asarray(a)`, `numpy.array(a)`, `a.__array__()`, `numpy.float32(a)`: TypeError,
  CuPy's "Implicit conversion to a NumPy array is not allowed" message.
- Any NumPy function or ufunc called on a strict array (`np.exp(a)`, `np.sum(a)`,
  `np.concatenate([a, a])`): TypeError. [CuPy dispatches the ones it implements to itself
  and returns a device array; the strict backend refuses them all, because in minilm a
  `np.` call in compute code is the bug, and where CuPy has no such function it fails too.]
- A NumPy array (of any shape, 0-d too) mixed with a strict array in an operator
  (`+ - * / @ ** == < ...`, in-place ones too) or in an `xp` function, `out=` included:
  TypeError, CuPy's "Unsupported type <class 'numpy.ndarray'>". Python scalars and NumPy
  scalars (`np.float32(2) * a`) are fine, as in CuPy. [CuPy accepts host arrays in a few
  functions: `cupy.einsum`, `cupy.take_along_axis`, `cupy.add.at`, `cupy.zeros_like`; the
  strict backend refuses host arrays in every `xp` function but `asarray` / `array`.]
  One hole: `np.float32(1) < a` reaches this class as a 0-d NumPy array, which cannot be
  told from `np.array(1.0) < a`; with a NumPy value on the left of an operator, 0-d
  arrays are let through [CuPy refuses the second].
- Indexing a strict array with a NumPy integer or boolean array, or a list, works, as in
  CuPy (the index is copied to the device). Setting `a[i] = host_array` (not 0-d) raises
  ValueError, as CuPy does ("non-scalar numpy.ndarray cannot be used for fill").
- `float()`, `int()`, `complex()` work on 0-d arrays only (TypeError otherwise, as CuPy:
  NumPy also takes size-1 arrays); `bool()` and `.item()` on size-1 arrays; `format(a,
  ".3f")` on 0-d arrays. `operator.index(a)` fails as on CuPy, so `range(a)` and
  `lst[a]` are TypeErrors: read the value with `int(a)` first.
- `a[...] = [1, 2]` (a list into a basic-indexed view) is a TypeError, as CuPy's fill.
- `a[i, j]` (an element) is a 0-d array that is a *view* of `a`, as on CuPy (NumPy gives a
  scalar copy): `old = a[i]; a[i] = old + eps` changes `old` too; `float(a[i])` copies.
- Strict arrays are unhashable and are not `numpy.ndarray` instances; `.base` is the
  strict array owning a view's memory, one object per owner, as `cupy.ndarray.base`.
- `xp` ufuncs refuse Python lists, as CuPy's do ("Unsupported type <class 'list'>");
  `xp.copyto(dst, host_array)` is a TypeError [CuPy: ValueError].
- `xp.random.default_rng(seed)` draws NumPy's numbers (as strict arrays), so a seeded run
  gives the same numbers as on NumPy [CuPy's generators give other streams]; its state
  cannot be saved or set (`bit_generator.state` is a method), as CuPy's cannot.
- Not checked on CuPy: `bool()` of a size-1 array with ndim > 0 (NumPy's answer is kept).

Every read of device data on the host is counted: `float/int/bool/complex/item/tolist`,
`.get()`, `minilm.to_numpy`, `format`, `str`/`repr`, `x in a`, and a slice bound that is
a device value. `minilm.backend.host_transfers()` reads the count,
`reset_host_transfers()` resets it and `host_transfer_log()` says where each happened, so a
test can assert that a training step moves only the loss to the host.
"""
import builtins
import collections
import operator
import os
import sys
import weakref

import numpy as np

# This module is an array namespace, so its own names shadow builtins below (any, all, abs,
# max, min, sum, round, ...): its code spells the builtins as builtins.any and so on.
_HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------
# Host-transfer counting (read through minilm.backend.host_transfers and friends)
# ---------------------------------------------------------------------------------------
_transfers = {"count": 0}
_transfer_log = collections.deque(maxlen=256)     # (kind, "file:line in function")


def _caller():
    """file:line of the first frame outside this module and minilm/backend.py."""
    skip = (os.path.join(_HERE, "strict.py"), os.path.join(_HERE, "backend.py"))
    f = sys._getframe(2)
    while f is not None and os.path.abspath(f.f_code.co_filename) in skip:
        f = f.f_back
    if f is None:
        return "?"
    return f"{os.path.relpath(f.f_code.co_filename)}:{f.f_lineno} in {f.f_code.co_name}"


def _note_transfer(kind):
    _transfers["count"] += 1
    _transfer_log.append((kind, _caller()))


def transfer_count():
    return _transfers["count"]


def transfer_log():
    return list(_transfer_log)


def reset_transfers():
    _transfers["count"] = 0
    _transfer_log.clear()


# ---------------------------------------------------------------------------------------
# Messages (CuPy's first sentence, then what to do)
# ---------------------------------------------------------------------------------------
_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
             "construct a NumPy array explicitly. (strict backend: minilm.to_numpy(a) or a.get() "
             "copy a device array to the host)")


def _mixing_error(x):
    return TypeError(f"Unsupported type {type(x)}: a NumPy array cannot be mixed with a strict "
                     "(device) array; move it to the device first with xp.asarray(...), as on CuPy")


_SCALARS = (bool, int, float, complex, np.generic)
_owners = weakref.WeakValueDictionary()   # id(NumPy array owning its memory) -> its StrictArray


class StrictArray:
    """A device array of the strict backend: a NumPy array that refuses to act like one.

    Build one with the namespace's functions (`xp.asarray(host)`, `xp.zeros(...)`), not with
    this constructor. The methods and properties are those of `cupy.ndarray` that minilm
    uses; results are StrictArrays (reductions give 0-d arrays, as on CuPy).
    """
    __slots__ = ("_a", "_base", "__weakref__")

    def __init__(self, a):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"StrictArray wraps a numpy.ndarray, got {type(a).__name__}; "
                            "build strict arrays with minilm.strict.asarray(...)")
        self._a = a
        self._base = None
        if a.base is None:                      # so that a view's .base finds this array; the
            owner = _owners.get(id(a))          # first wrapper of an owner stays its owner
            if owner is None or owner._a is not a:
                _owners[id(a)] = self

    @property
    def base(self):
        """The strict array that owns this view's memory (None for an owner), as cupy's
        `.base`: the same object for every view of it, so memory can be counted once."""
        b = self._a.base
        if not isinstance(b, np.ndarray):
            return None
        if self._base is None or self._base._a is not b:
            owner = _owners.get(id(b))
            self._base = owner if owner is not None and owner._a is b else StrictArray(b)
        return self._base

    # -- the ways out -------------------------------------------------------------------
    def get(self):
        """Host (NumPy) copy, as `cupy.ndarray.get()`; counted as a host transfer."""
        _note_transfer("get")
        return self._a.copy()

    def set(self, host):
        """Copy a NumPy array of the same shape into this array, as `cupy.ndarray.set`."""
        if not isinstance(host, np.ndarray):
            raise TypeError(f"set() takes a numpy.ndarray, got {type(host).__name__}")
        if host.shape != self._a.shape:
            raise ValueError(f"set(): shape mismatch, {host.shape} into {self._a.shape}")
        self._a[...] = host

    def item(self, *args):
        _note_transfer("item")
        return self._a.item(*args)

    def tolist(self):
        _note_transfer("tolist")
        return self._a.tolist()

    def _scalar(self, kind, convert):
        if self._a.ndim != 0:
            raise TypeError("only 0-dimensional arrays can be converted to Python scalars "
                            f"(this one has shape {self._a.shape})")
        _note_transfer(kind)
        return convert(self._a[()])

    def __float__(self):
        return self._scalar("float", float)

    def __int__(self):
        return self._scalar("int", int)

    def __complex__(self):
        return self._scalar("complex", complex)

    def __bool__(self):
        if self._a.size != 1:
            raise ValueError("The truth value of an array with more than one element is "
                             "ambiguous. Use a.any() or a.all()")
        _note_transfer("bool")
        return bool(self._a)

    def __format__(self, spec):
        _note_transfer("format")
        return format(self._a[()] if self._a.ndim == 0 else self._a, spec)

    def __repr__(self):
        _note_transfer("repr")
        return repr(self._a)

    def __str__(self):
        _note_transfer("str")
        return str(self._a)

    def __contains__(self, value):
        _note_transfer("contains")
        return bool((self._a == _operand(value)).any())

    # -- no implicit conversion --------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_function__(self, func, types, args, kwargs):
        name = getattr(func, "__name__", str(func))
        raise TypeError(f"numpy.{name} was called on a strict (device) array: NumPy functions "
                        f"do not take device arrays. Compute code spells it xp.{name}, with "
                        "xp = minilm.get_xp(x)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # A NumPy scalar on the left of an operator (np.float32(2) * a) arrives here as a
        # ufunc call; that is legal on CuPy, so operator ufuncs with one strict array and
        # one NumPy scalar (or the 0-d array NumPy makes of it for comparisons) are done.
        if (method == "__call__" and not kwargs and ufunc.__name__ in _OPERATOR_UFUNCS
                and len(inputs) == 2):
            other = inputs[0] if inputs[1] is self else inputs[1]
            if isinstance(other, _SCALARS) or (isinstance(other, np.ndarray) and other.ndim == 0):
                return _wrap(ufunc(*(_operand(x) if x is not other else x for x in inputs)))
        for x in list(inputs) + list(kwargs.get("out", ()) or ()):
            if isinstance(x, np.ndarray):
                raise _mixing_error(x)
        raise TypeError(f"numpy.{ufunc.__name__} was called on a strict (device) array: NumPy "
                        f"ufuncs do not take device arrays. Compute code spells it "
                        f"xp.{ufunc.__name__}, with xp = minilm.get_xp(x)")

    __hash__ = None

    # -- properties --------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (StrictArray(row) if isinstance(row, np.ndarray) else StrictArray(np.asarray(row))
                for row in self._a)

    # -- indexing ----------------------------------------------------------------------
    def __getitem__(self, key):
        k = _index(key)
        r = self._a[k]
        if isinstance(r, np.generic):       # one element: CuPy gives a 0-d *view* of it, so a
            r = self._a[(k if isinstance(k, tuple) else (k,)) + (Ellipsis,)]   # later write shows
        return _wrap(r)

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill (strict backend, "
                             "as CuPy: move it to the device with xp.asarray first)")
        if isinstance(value, (list, tuple)) and not _advanced(key):
            # CuPy fills a basic-indexed view with a scalar only (ndarray.fill)
            raise TypeError(f"Unsupported type {type(value)} (strict backend, as CuPy: "
                            "a[...] = value takes a scalar or a device array; move a list "
                            "to the device with xp.asarray first)")
        self._a[_index(key)] = _operand(value) if isinstance(value, StrictArray) else value

    # -- arithmetic (generated below) ---------------------------------------------------
    def __neg__(self):
        return _wrap(-self._a)

    def __pos__(self):
        return _wrap(+self._a)

    def __abs__(self):
        return _wrap(builtins.abs(self._a))

    def __invert__(self):
        return _wrap(~self._a)


def _advanced(key):
    """True when an index holds an array or a list (advanced indexing)."""
    keys = key if isinstance(key, tuple) else (key,)
    return builtins.any(isinstance(k, (list, np.ndarray)) or type(k) is StrictArray for k in keys)


def _index(key):
    """An index for the wrapped array: strict arrays unwrapped; NumPy index arrays allowed
    (CuPy copies them to the device); a device value as a slice bound is read (counted)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if type(key) is StrictArray:
        return key._a
    if isinstance(key, slice) and builtins.any(type(v) is StrictArray for v in (key.start, key.stop, key.step)):
        return slice(*(int(v) if type(v) is StrictArray else v for v in (key.start, key.stop, key.step)))
    if isinstance(key, list) and builtins.any(type(k) is StrictArray for k in key):
        return [_index(k) for k in key]
    return key


def _operand(x):
    """An operator's other operand, unwrapped; NotImplemented for types operators refuse."""
    if type(x) is StrictArray:
        return x._a
    if isinstance(x, _SCALARS) or x is None:
        return x
    if isinstance(x, np.ndarray):
        raise _mixing_error(x)
    return NotImplemented


def _wrap(r):
    """Wrap NumPy results as strict arrays (NumPy scalars become 0-d arrays, as on CuPy)."""
    if isinstance(r, np.ndarray):
        return StrictArray(r)
    if isinstance(r, np.generic):
        return StrictArray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(x) for x in r)
    if isinstance(r, list):
        return [_wrap(x) for x in r]
    return r


def _unwrap(x):
    """A function argument unwrapped, lists and tuples recursively; NumPy arrays refused."""
    if type(x) is StrictArray:
        return x._a
    if isinstance(x, np.ndarray):
        raise _mixing_error(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    return x


_OPERATOR_UFUNCS = {
    "add", "subtract", "multiply", "true_divide", "divide", "floor_divide", "remainder",
    "power", "matmul", "equal", "not_equal", "less", "less_equal", "greater",
    "greater_equal", "bitwise_and", "bitwise_or", "bitwise_xor", "left_shift", "right_shift",
}


def _binary(op, iop=None):
    def forward(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        return _wrap(op(self._a, o))

    def reflected(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        return _wrap(op(o, self._a))

    def inplace(self, other):
        o = _operand(other)
        if o is NotImplemented:
            return NotImplemented
        iop(self._a, o)                 # NumPy's in-place operator writes into self._a
        return self

    return forward, reflected, inplace


for _name in ["add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
              "xor", "lshift", "rshift"]:
    _f, _r, _i = _binary(getattr(operator, f"{_name}_" if _name in ("and", "or") else _name),
                         getattr(operator, f"i{_name}"))
    setattr(StrictArray, f"__{_name}__", _f)
    setattr(StrictArray, f"__r{_name}__", _r)
    setattr(StrictArray, f"__i{_name}__", _i)

for _name in ["eq", "ne", "lt", "le", "gt", "ge"]:
    setattr(StrictArray, f"__{_name}__", _binary(getattr(operator, _name))[0])


def _method(name):
    def method(self, *args, **kwargs):
        return _wrap(getattr(self._a, name)(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
    method.__name__ = name
    method.__doc__ = f"cupy.ndarray.{name} (NumPy's, on the wrapped array; results stay strict)."
    return method


for _name in ["reshape", "transpose", "swapaxes", "astype", "sum", "mean", "max", "min",
              "argmax", "argmin", "std", "var", "prod", "any", "all", "cumsum", "copy",
              "ravel", "flatten", "squeeze", "take", "clip", "round", "dot", "repeat",
              "nonzero", "sort", "argsort", "fill", "conj", "view", "diagonal", "trace",
              "partition", "argpartition", "searchsorted", "cumprod"]:
    setattr(StrictArray, _name, _method(_name))

ndarray = StrictArray

# ---------------------------------------------------------------------------------------
# The namespace: constants and dtypes are NumPy's own objects, as in CuPy
# ---------------------------------------------------------------------------------------
(float16, float32, float64, int8, int16, int32, int64, uint8, uint16, uint32, uint64,
 bool_, complex64, complex128, dtype, finfo, iinfo, integer, floating, number,
 issubdtype, result_type, promote_types, can_cast) = (
    np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
    np.uint16, np.uint32, np.uint64, np.bool_, np.complex64, np.complex128, np.dtype,
    np.finfo, np.iinfo, np.integer, np.floating, np.number, np.issubdtype, np.result_type,
    np.promote_types, np.can_cast)
inf, nan, pi, e, newaxis = np.inf, np.nan, np.pi, np.e, np.newaxis


def _function(name):
    fn = getattr(np, name)

    def function(*args, **kwargs):
        return _wrap(fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
    function.__name__ = name
    function.__qualname__ = name
    function.__doc__ = f"cupy.{name}: NumPy's on the wrapped arrays; NumPy arrays refused."
    return function


# Functions CuPy has with NumPy's signature (the ones minilm uses, and their neighbours).
_FUNCTIONS = [
    # creation
    "zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like",
    "arange", "linspace", "eye", "identity", "tril", "triu", "ascontiguousarray",
    "asfortranarray",
    # shape and joining
    "concatenate", "stack", "vstack", "hstack", "split", "array_split", "reshape",
    "transpose", "swapaxes", "moveaxis", "expand_dims", "squeeze", "broadcast_to",
    "broadcast_arrays", "repeat", "tile", "flip", "roll", "pad", "where", "take",
    "take_along_axis", "put_along_axis", "ravel", "atleast_1d", "atleast_2d", "diag",
    "diagonal", "meshgrid", "tensordot", "triu_indices", "tril_indices",
    # linear algebra and reductions
    "dot", "vdot", "einsum", "outer", "inner", "sum", "prod", "mean", "var", "std", "max",
    "min", "amax", "amin", "argmax", "argmin", "cumsum", "cumprod", "clip", "round",
    "around", "sort", "argsort", "partition", "argpartition", "quantile", "percentile",
    "median", "unique", "nonzero", "flatnonzero", "count_nonzero", "any", "all",
    "allclose", "isclose", "array_equal", "searchsorted", "bincount", "diff", "nan_to_num",
    "logaddexp", "copyto", "shape", "ndim", "size",
]
for _name in _FUNCTIONS:
    globals()[_name] = _function(_name)


class _Ufunc:
    """A NumPy ufunc that takes strict arrays and scalars only (CuPy's ufuncs refuse lists
    and NumPy arrays); `out=` must be a strict array. `.at`, `.reduce`, `.outer` too."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__
        self.__doc__ = f"cupy.{uf.__name__}: NumPy's ufunc on strict arrays."

    def _args(self, args):
        out = []
        for x in args:
            if type(x) is StrictArray:
                out.append(x._a)
            elif isinstance(x, _SCALARS):
                out.append(x)
            elif isinstance(x, np.ndarray):
                raise _mixing_error(x)
            else:
                raise TypeError(f"Unsupported type {type(x)} in {self.__name__} (strict backend, "
                                "as CuPy: pass an array or a scalar)")
        return out

    def _kwargs(self, kwargs):
        kw = dict(kwargs)
        if "out" in kw and kw["out"] is not None:
            outs = kw["out"] if isinstance(kw["out"], tuple) else (kw["out"],)
            kw["out"] = tuple(self._args(outs))
        return kw

    def __call__(self, *args, **kwargs):
        result = _wrap(self._uf(*self._args(args), **self._kwargs(kwargs)))
        out = kwargs.get("out")
        if out is not None:                     # as CuPy: the out= array itself comes back
            return out[0] if isinstance(out, tuple) and len(out) == 1 else out
        return result

    def at(self, a, indices, b=None):
        if type(a) is not StrictArray:
            raise TypeError(f"{self.__name__}.at updates a strict array in place, got {type(a)}")
        if isinstance(indices, np.ndarray) or isinstance(b, np.ndarray):
            raise _mixing_error(indices if isinstance(indices, np.ndarray) else b)
        args = (a._a, _index(indices)) + (() if b is None else (_operand(b),))
        self._uf.at(*args)

    def reduce(self, a, *args, **kwargs):
        return _wrap(self._uf.reduce(*self._args([a]), *args, **self._kwargs(kwargs)))

    def outer(self, a, b, **kwargs):
        return _wrap(self._uf.outer(*self._args([a, b]), **self._kwargs(kwargs)))


_UFUNCS = [
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "power",
    "remainder", "mod", "negative", "abs", "absolute", "sqrt", "square", "reciprocal", "exp",
    "expm1", "exp2", "log", "log1p", "log2", "log10", "tanh", "sinh", "cosh", "sin", "cos",
    "tan", "arctan", "arcsin", "arccos", "arctan2", "maximum", "minimum", "fmax", "fmin",
    "sign", "floor", "ceil", "rint", "trunc", "isfinite", "isnan", "isinf", "signbit",
    "copysign", "logical_and", "logical_or", "logical_not", "logical_xor", "equal",
    "not_equal", "less", "less_equal", "greater", "greater_equal", "matmul", "bitwise_and",
    "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift",
]
for _name in _UFUNCS:
    globals()[_name] = _Ufunc(getattr(np, _name))


# -- the explicit ways in and out ------------------------------------------------------
def _host_value(x):
    """Host data for asarray/array: NumPy arrays and lists as given, device arrays inside
    lists unwrapped (CuPy takes a list of device arrays, not a list mixing in host arrays)."""
    if type(x) is StrictArray:
        return x._a
    if isinstance(x, (list, tuple)):
        items = [_host_value(v) for v in x]
        if builtins.any(type(v) is StrictArray for v in x) and builtins.any(
                isinstance(v, np.ndarray) for v in x if type(v) is not StrictArray):
            raise TypeError(_IMPLICIT)
        return items
    return x


def asarray(a, dtype=None, order=None):
    """The explicit way in: a strict array of `a` (NumPy array, list, scalar or strict array).

    A host array is copied, as a host-to-device copy is: changing it later does not change
    the device array. A strict array of the right dtype comes back as it is."""
    if type(a) is StrictArray:
        return a if dtype is None or a.dtype == np.dtype(dtype) else StrictArray(a._a.astype(dtype))
    return StrictArray(np.array(_host_value(a), dtype=dtype, order=order or "K", copy=True))


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    """Like `cupy.array`: a new strict array (a copy unless copy=False and nothing changes)."""
    if type(a) is StrictArray and not copy and (dtype is None or a.dtype == np.dtype(dtype)) \
            and a.ndim >= ndmin:
        return a
    src = a._a if type(a) is StrictArray else _host_value(a)
    return StrictArray(np.array(src, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asnumpy(a):
    """Host copy (counted), as `cupy.asnumpy`; NumPy arrays and scalars pass through."""
    if type(a) is StrictArray:
        return a.get()
    return np.asarray(a)


def get_array_module(*arrays):
    """As `cupy.get_array_module`: this module if any argument is a strict array, else NumPy."""
    return sys.modules[__name__] if builtins.any(type(a) is StrictArray for a in arrays) else np


# -- random numbers: NumPy's streams, device arrays out ---------------------------------
class _DeviceBitGenerator:
    """As CuPy's bit generators: the state lives on the device and cannot be saved.
    `state()` is a method returning an address (an int), and `state = ...` is an
    AttributeError, so code that would checkpoint or replay it fails here as on a GPU."""

    __slots__ = ("_g",)

    def __init__(self, g):
        self._g = g

    def state(self):
        return id(self._g)

    def random_raw(self, size=None):
        return _wrap(self._g.bit_generator.random_raw(size))


class _Generator:
    """`xp.random.default_rng(seed)`: NumPy's Generator (the same numbers as on NumPy)
    whose draws are strict arrays. Its state cannot be saved, as CuPy's cannot
    (`bit_generator.state` is a method); minilm's models draw dropout from
    minilm.backend.CounterRNG on this backend and on CuPy for that reason."""

    def __init__(self, seed):
        self._g = np.random.default_rng(seed)
        self.bit_generator = _DeviceBitGenerator(self._g)

    def random(self, size=None, dtype=np.float64):
        return _wrap(self._g.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=np.float64):
        return _wrap(self._g.standard_normal(size, dtype=dtype))

    def normal(self, loc=0.0, scale=1.0, size=None):
        return _wrap(self._g.normal(loc, scale, size))

    def uniform(self, low=0.0, high=1.0, size=None):
        return _wrap(self._g.uniform(low, high, size))

    def integers(self, low, high=None, size=None, dtype=np.int64):
        return _wrap(self._g.integers(low, high, size, dtype=dtype))


class _Random:
    """`xp.random`: only `default_rng` (minilm draws host-side otherwise, see backend.host_rng)."""

    @staticmethod
    def default_rng(seed=None):
        return _Generator(seed)


random = _Random()


def __getattr__(name):
    raise AttributeError(f"the strict backend (minilm.strict) has no {name!r}: it exposes only "
                         "functions CuPy has too; if cupy.{0} exists, add it to "
                         "minilm/strict.py's lists".format(name))
