"""Elementwise activations: ReLU, GELU (tanh form for GPT-2, erf form for BERT), tanh.

Each backward is the chain rule with the local derivative written above the code:
dx = dout * f'(x).
"""
import math

from ..backend import get_xp, row_blocks


def relu_forward(x):
    """out = max(x, 0)"""
    out = get_xp(x).maximum(x, 0)
    return out, out


def relu_backward(dout, cache):
    """d relu/dx = 1 where x > 0 else 0 (we take 0 at the kink x = 0, as PyTorch does)."""
    out = cache
    return dout * (out > 0)


_GELU_A = math.sqrt(2.0 / math.pi)
_GELU_B = 0.044715


def gelu_tanh_forward(x):
    """GPT-2's "gelu_new": out = 0.5 x (1 + t),  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3).

    The cache is the local derivative itself (one (..., F) array, as small as caching x):

        d out/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx = h (1 + x (1 - t) du/dx),
        h = 0.5 (1 + t),   du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)

    Forward has t and h in hand, so the derivative costs it a few elementwise passes and
    backward is a single multiply (instead of recomputing tanh(u) there). The passes run a
    block of rows at a time, so that their temporaries stay in cache (see `row_blocks`).
    """
    if x.dtype.itemsize < 4:
        # float16: computed in float32 and each result rounded once, as a GPU kernel does
        # (PyTorch's float16 GELU computes in float; NumPy's float16 ufuncs are also slow)
        out, grad = gelu_tanh_forward(x.astype("float32"))
        return out.astype(x.dtype), grad.astype(x.dtype)
    xp = get_xp(x)
    x2d = x.reshape(-1, x.shape[-1])                      # (N, F)
    out, grad = xp.empty_like(x2d), xp.empty_like(x2d)
    for rows in row_blocks(x2d):
        _gelu_tanh_rows(x2d[rows], out[rows], grad[rows])
    return out.reshape(x.shape), grad.reshape(x.shape)


def _gelu_tanh_rows(x, out, grad):
    """Writes out = gelu_new(x) and grad = its derivative, for one block of rows."""
    xp = get_xp(x)
    xp.multiply(x, x, out=grad)                           # x^2, in grad's memory
    t = grad * (_GELU_A * _GELU_B)
    t += _GELU_A
    t *= x                                                # u = sqrt(2/pi) (1 + 0.044715 x^2) x
    xp.tanh(t, out=t)                                     # t = tanh(u)
    h = t + 1.0
    h *= 0.5                                              # h = 0.5 (1 + t)
    xp.multiply(h, x, out=out)                            # out = 0.5 x (1 + t)
    grad *= 3.0 * _GELU_A * _GELU_B
    grad += _GELU_A                                       # du/dx
    grad *= x
    xp.subtract(1.0, t, out=t)                            # 1 - t (t is not needed any more)
    grad *= t                                             # x (1 - t) du/dx
    grad += 1.0
    grad *= h                                             # h (1 + x (1 - t) du/dx)


def gelu_tanh_backward(dout, cache):
    """dx = dout * d out/dx, the derivative that forward cached."""
    return dout * cache


def gelu_tanh_forward_textbook(x):
    """`gelu_tanh_forward` as its formula, on the whole array, caching x (the fast one
    caches the derivative and works a block of rows at a time; the same numbers)."""
    xp = get_xp(x)
    return 0.5 * x * (1.0 + xp.tanh(_GELU_A * (x + _GELU_B * x ** 3))), x


def gelu_tanh_backward_textbook(dout, cache):
    """dx = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) du/dx),  t = tanh(u)."""
    x = cache
    xp = get_xp(x)
    t = xp.tanh(_GELU_A * (x + _GELU_B * x ** 3))
    du = _GELU_A * (1.0 + 3.0 * _GELU_B * x ** 2)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t ** 2) * du)


def erf(x):
    """Error function, to full double precision, on NumPy or CuPy.

    NumPy has no erf, so we evaluate W. J. Cody's rational Chebyshev approximations
    ("Rational Chebyshev approximations for the error function", Math. Comp. 1969), the
    ones behind most C libraries: a rational function in x^2 for |x| < 0.5, and for larger
    |x| erfc(|x|) = exp(-x^2) R(|x|) (two ranges), then erf = 1 - erfc. Relative error is
    below 1e-15 in float64; float32 inputs are computed in float64 and cast back.
    """
    xp = get_xp(x)
    dtype = x.dtype
    z = x.astype(xp.float64)
    a = xp.abs(z)
    out = xp.empty_like(z)

    # |x| < 0.5: erf(x) = x * P(x^2) / Q(x^2)
    small = a < 0.5
    if small.any():
        s = z[small]
        y = s * s
        p = (((0.185777706184603153 * y + 3.16112374387056560) * y + 113.864154151050156) * y
             + 377.485237685302021) * y + 3209.37758913846947
        q = (((y + 23.6012909523441209) * y + 244.024637934444173) * y
             + 1282.61652607737228) * y + 2844.23683343917062
        out[small] = s * p / q

    # 0.5 <= |x| < 4: erfc(|x|) = exp(-x^2) P(|x|) / Q(|x|)
    mid = (a >= 0.5) & (a < 4.0)
    if mid.any():
        s = a[mid]
        p = ((((((((2.15311535474403846e-8 * s + 0.564188496988670089) * s + 8.88314979438837594) * s
                  + 66.1191906371416295) * s + 298.635138197400131) * s + 881.952221241769090) * s
               + 1712.04761263407058) * s + 2051.07837782607147) * s + 1230.33935479799725)
        q = ((((((((s + 15.7449261107098347) * s + 117.693950891312499) * s + 537.181101862009858) * s
                 + 1621.38957456669019) * s + 3290.79923573345963) * s + 4362.61909014324716) * s
              + 3439.36767414372164) * s + 1230.33935480374942)
        erfc = _exp_minus_square(xp, s) * p / q
        out[mid] = xp.where(z[mid] < 0, erfc - 1.0, 1.0 - erfc)

    # |x| >= 4: erfc(|x|) = exp(-x^2)/|x| (1/sqrt(pi) + R(1/x^2)/x^2)
    big = a >= 4.0
    if big.any():
        s = a[big]
        y = 1.0 / (s * s)
        p = ((((0.0163153871373020978 * y + 0.305326634961232344) * y + 0.360344899949804439) * y
              + 0.125781726111229246) * y + 0.0160837851487422766) * y + 6.58749161529837803e-4
        q = ((((y + 2.56852019228982242) * y + 1.87295284992346725) * y + 0.527905102951428412) * y
             + 0.0605183413124413191) * y + 0.00233520497626869185
        r = y * p / q
        erfc = _exp_minus_square(xp, s) / s * (0.564189583547756287 - r)
        out[big] = xp.where(z[big] < 0, erfc - 1.0, 1.0 - erfc)
    return out.astype(dtype, copy=False)


def _exp_minus_square(xp, s):
    """exp(-s^2) computed as exp(-t^2) exp(-(s-t)(s+t)) with t = s rounded to 1/16, as Cody
    does, so the large cancellation in s^2 loses no digits."""
    t = xp.floor(s * 16.0) / 16.0
    return xp.exp(-t * t) * xp.exp(-(s - t) * (s + t))


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_erf_forward(x):
    """BERT's exact GELU: out = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))."""
    cdf = erf(x * _INV_SQRT2)
    cdf += 1.0
    cdf *= 0.5                                            # Phi(x)
    return x * cdf, (x, cdf)


def gelu_erf_backward(dout, cache):
    """d/dx [x Phi(x)] = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)."""
    x, cdf = cache
    xp = get_xp(x)
    pdf = xp.exp(-0.5 * x * x)
    pdf *= _INV_SQRT_2PI
    return dout * (cdf + x * pdf)


def tanh_forward(x):
    """out = tanh(x) (BERT's pooler)."""
    out = get_xp(x).tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """d tanh/dx = 1 - tanh^2"""
    out = cache
    return dout * (1.0 - out * out)


ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "gelu_new": (gelu_tanh_forward, gelu_tanh_backward),
    "gelu_pytorch_tanh": (gelu_tanh_forward, gelu_tanh_backward),
    "gelu": (gelu_erf_forward, gelu_erf_backward),
    "tanh": (tanh_forward, tanh_backward),
}


def get_activation(name):
    """(forward, backward) pair for an activation name as written in Hugging Face configs."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
