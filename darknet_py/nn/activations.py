"""Darknet's activations (pj:src/activations.c, ab additions) written once for NumPy and CuPy.

``activate(x, name)`` gives y.  ``gradient(y, x, name)`` gives dy/dx elementwise.  As in Darknet,
the gradient of every pj activation is written as a function of the output y; swish, mish,
hard_mish and gelu need the pre-activation x (Darknet keeps ``activation_input`` for them).
Where Darknet's CPU code is numerically broken (tanh(400) = NaN) the stable form is used.

AlexeyAB's ``revleaky`` is leaky forward; its backward is AlexeyAB's GPU one, delta / leaky'(y)
(1 above 0, 10 below: a reversed slope, not the derivative; its CPU code uses leaky's).

AlexeyAB's ``normalize_channels*`` (``CHANNEL_ACTIVATIONS``, [convolutional] only) mix the
channels of each position, (N, C, H, W) over axis 1 (ab activate_array_normalize_channels*):
``activate_channels`` and ``channels_backward`` (the exact gradient, where AlexeyAB's
gradient_array_normalize_channels* multiply delta by sum(y delta); docs/notes.md).
"""

from .backend import xp_of

SELU_LAMBDA = 1.0507
SELU_ALPHA = 1.6732
GELU_A = 0.797885
GELU_B = 0.035677

# pj's activations (enum order), then AlexeyAB's that users run.
ACTIVATIONS = ("logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu",
               "loggy", "stair", "hardtan", "lhtan", "selu",
               "relu6", "swish", "mish", "hard_mish", "gelu", "revleaky")
NEEDS_INPUT = frozenset({"swish", "mish", "hard_mish", "gelu"})
#: AlexeyAB's activations over the channels of a position, only in [convolutional]
CHANNEL_ACTIVATIONS = ("normalize_channels", "normalize_channels_softmax",
                       "normalize_channels_softmax_maxval")
NORM_CHANNELS_EPS = 0.0001          # ab activate_array_normalize_channels*: const float eps


def _sigmoid(xp, x):
    # 1/(1+e^-x), in a form that cannot overflow
    return 0.5 * (1 + xp.tanh(0.5 * x))


def _softplus(xp, x):
    # log(1+e^x) without overflow
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def activate(x, name):
    xp = xp_of(x)
    if name == "linear":
        return x
    if name == "logistic":
        return _sigmoid(xp, x)
    if name == "loggy":
        return 2 * _sigmoid(xp, x) - 1
    if name == "relu":
        return xp.maximum(x, 0)
    if name == "relu6":
        return xp.clip(x, 0, 6)
    if name in ("leaky", "revleaky"):
        return xp.where(x > 0, x, 0.1 * x)
    if name == "relie":
        return xp.where(x > 0, x, 0.01 * x)
    if name == "ramp":
        return x * (x > 0) + 0.1 * x
    if name == "elu":
        return xp.where(x >= 0, x, xp.expm1(xp.minimum(x, 0)))
    if name == "selu":
        return xp.where(x >= 0, SELU_LAMBDA * x,
                        SELU_LAMBDA * SELU_ALPHA * xp.expm1(xp.minimum(x, 0)))
    if name == "tanh":
        return xp.tanh(x)
    if name == "plse":
        return xp.where(x < -4, 0.01 * (x + 4),
                        xp.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))
    if name == "stair":
        n = xp.floor(x)
        half = xp.floor(x / 2)
        return xp.where(xp.fmod(n, 2) == 0, half, (x - n) + half)
    if name == "hardtan":
        return xp.clip(x, -1, 1)
    if name == "lhtan":
        return xp.where(x < 0, 0.001 * x, xp.where(x > 1, 0.001 * (x - 1) + 1, x))
    if name == "swish":
        return x * _sigmoid(xp, x)
    if name == "mish":
        return x * xp.tanh(_softplus(xp, x))
    if name == "hard_mish":
        return xp.where(x > 0, x, xp.where(x > -2, 0.5 * x * x + x, 0))
    if name == "gelu":
        return 0.5 * x * (1 + xp.tanh(GELU_A * x + GELU_B * x * x * x))
    raise ValueError(f"unknown activation '{name}'")


def gradient(y, x, name):
    """dy/dx.  ``y`` is the activation's output; ``x`` its input (only for NEEDS_INPUT)."""
    xp = xp_of(y)
    one = xp.ones_like(y)
    if name == "linear":
        return one
    if name == "logistic":
        return y * (1 - y)
    if name == "loggy":
        u = (y + 1) / 2
        return 2 * u * (1 - u)
    if name == "relu":
        return (y > 0).astype(y.dtype)
    if name == "relu6":
        return ((y > 0) & (y < 6)).astype(y.dtype)
    if name == "leaky":
        return xp.where(y > 0, one, 0.1 * one)
    if name == "revleaky":      # ab gradient_array_revleaky_kernel: delta /= leaky'(y)
        return xp.where(y > 0, one, 10 * one)
    if name == "relie":
        return xp.where(y > 0, one, 0.01 * one)
    if name == "ramp":
        return (y > 0).astype(y.dtype) + 0.1
    if name == "elu":
        return xp.where(y >= 0, one, y + 1)
    if name == "selu":
        return xp.where(y >= 0, SELU_LAMBDA * one, y + SELU_LAMBDA * SELU_ALPHA)
    if name == "tanh":
        return 1 - y * y
    if name == "plse":
        return xp.where((y < 0) | (y > 1), 0.01 * one, 0.125 * one)
    if name == "stair":
        return (xp.floor(y) != y).astype(y.dtype)
    if name == "hardtan":
        return ((y > -1) & (y < 1)).astype(y.dtype)
    if name == "lhtan":
        return xp.where((y > 0) & (y < 1), one, 0.001 * one)
    if name == "swish":
        s = _sigmoid(xp, x)
        return y + s * (1 - y)
    if name == "mish":
        t = xp.tanh(_softplus(xp, x))
        return x * (1 - t * t) * _sigmoid(xp, x) + t
    if name == "hard_mish":
        return xp.where(x > 0, one, xp.where(x > -2, x + 1, 0 * one))
    if name == "gelu":
        t = xp.tanh(GELU_A * x + GELU_B * x * x * x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (GELU_A + 3 * GELU_B * x * x)
    raise ValueError(f"unknown activation '{name}'")


def activate_channels(x, name):
    """AlexeyAB's channel activations of an (N, C, H, W) array, per position over C:
    normalize_channels: relu(x) / (eps + sum relu(x)); normalize_channels_softmax:
    exp(x) / (eps + sum exp(x)); ..._maxval: exp(x - max) / (eps + sum exp(x - max))."""
    xp = xp_of(x)
    if name == "normalize_channels":
        p = xp.maximum(x, 0)
        return p / (NORM_CHANNELS_EPS + p.sum(axis=1, keepdims=True))
    if name in ("normalize_channels_softmax", "normalize_channels_softmax_maxval"):
        if name.endswith("maxval"):
            x = x - x.max(axis=1, keepdims=True)
        e = xp.exp(x)
        return e / (NORM_CHANNELS_EPS + e.sum(axis=1, keepdims=True))
    raise ValueError(f"unknown channel activation '{name}'")


def channels_backward(delta, y, x, name):
    """The delta of the pre-activation ``x`` from the output's ``delta`` (``y`` the output):
    normalize_channels: [x > 0] (delta - sum y delta) / (eps + sum relu(x)); the softmaxes:
    y (delta - sum y delta), and with _maxval the max channel also gets -r sum y delta,
    r = eps / (eps + sum exp(x - max)) (the shift's share through eps)."""
    xp = xp_of(delta)
    dot = (y * delta).sum(axis=1, keepdims=True)
    if name == "normalize_channels":
        s = NORM_CHANNELS_EPS + xp.maximum(x, 0).sum(axis=1, keepdims=True)
        return xp.where(x > 0, (delta - dot) / s, 0).astype(delta.dtype)
    dx = y * (delta - dot)
    if name == "normalize_channels_softmax_maxval":
        top = x.max(axis=1, keepdims=True)
        r = NORM_CHANNELS_EPS / (NORM_CHANNELS_EPS + xp.exp(x - top).sum(axis=1, keepdims=True))
        first = x.argmax(axis=1)[:, None]           # ab keeps the first maximum
        at = xp.arange(x.shape[1]).reshape(1, -1, *([1] * (x.ndim - 2))) == first
        dx = dx - xp.where(at, r * dot, 0)
    elif name != "normalize_channels_softmax":
        raise ValueError(f"unknown channel activation '{name}'")
    return dx.astype(delta.dtype)
