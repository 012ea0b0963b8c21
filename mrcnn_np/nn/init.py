"""Weight initialisers with torch's formulas, driven by an explicit random generator.

Each function fills an array **in place** and returns it, like ``torch.nn.init.*_``.
``rng`` is an ``np.random.Generator`` or an integer seed; values are drawn in float64
and cast to the array's dtype, so a seed gives the same weights in float32 and float64.
The draws follow torch's *distributions*, not its random stream.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module


def make_rng(rng=None) -> np.random.Generator:
    """A Generator from a Generator (returned as is), an int seed, or None (seed 0)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng: a seed must be >= 0, got {rng}")
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def calculate_fan_in_and_fan_out(shape: tuple[int, ...]) -> tuple[int, int]:
    """torch's rule: fan_in = shape[1] * receptive field, fan_out = shape[0] * receptive field.

    (For a transposed conv weight ``(C_in, C_out, kh, kw)`` this makes fan_in ``C_out*kh*kw``,
    exactly as torch computes it.)
    """
    if len(shape) < 2:
        raise ValueError(f"fan in/out needs at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch.nn.init.calculate_gain for the nonlinearities used here."""
    if nonlinearity in ("linear", "conv2d", "conv_transpose2d", "sigmoid"):
        return 1.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _fill(array, values: np.ndarray):
    xp = get_array_module(array)
    array[...] = xp.asarray(values.astype(array.dtype))
    return array


def uniform_(array, a: float = 0.0, b: float = 1.0, rng=None):
    return _fill(array, make_rng(rng).uniform(a, b, size=array.shape))


def normal_(array, mean: float = 0.0, std: float = 1.0, rng=None):
    return _fill(array, make_rng(rng).normal(mean, std, size=array.shape))


def constant_(array, value: float):
    array[...] = value
    return array


def zeros_(array):
    return constant_(array, 0)


def ones_(array):
    return constant_(array, 1)


def _fan(shape, mode):
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def kaiming_uniform_(array, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", rng=None):
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan)`` (He et al. 2015)."""
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(array.shape, mode))
    return uniform_(array, -bound, bound, rng)


def kaiming_normal_(array, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", rng=None):
    """N(0, std^2) with ``std = gain / sqrt(fan)`` (torchvision's ResNet uses fan_out, relu)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(array.shape, mode))
    return normal_(array, 0.0, std, rng)


def default_weight_and_bias_(weight, bias, rng=None):
    """torch's default for Linear / Conv2d / ConvTranspose2d ``reset_parameters``:
    weight ``kaiming_uniform_(a=sqrt(5))`` (i.e. U(+-1/sqrt(fan_in))), bias U(+-1/sqrt(fan_in))."""
    rng = make_rng(rng)
    kaiming_uniform_(weight, a=math.sqrt(5), rng=rng)
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight.shape)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        uniform_(bias, -bound, bound, rng)
