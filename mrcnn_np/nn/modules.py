"""Modules: containers of parameters and buffers with torch's naming and state-dict rules.

A :class:`Module` registers the :class:`Parameter` s, buffers and sub-modules assigned to
its attributes, so ``named_parameters()`` and ``state_dict()`` produce dotted names such
as ``layer1.0.conv1.weight`` -- the same keys torchvision uses, which is what lets a
torchvision state dict load with no renaming table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import numpy as np

from ..autograd import Tensor
from ..backend import check_device, device_of, get_array_module, to_device
from ..checks import check_bool, check_float_dtype, describe, pair
from . import functional as F
from .init import default_weight_and_bias_, make_rng


class Parameter(Tensor):
    """A Tensor that a Module trains: ``requires_grad=True`` unless told otherwise."""

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, requires_grad={self.requires_grad})"


class LoadResult(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


class Module:
    """Base class: subclasses assign parameters/buffers/modules in ``__init__`` and define
    ``forward``. Calling the module calls ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "training", True)

    # --- registration ------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"call Module.__init__() in {type(self).__name__}.__init__ first")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, (Parameter, Module)):
            for table in (params, buffers, modules):
                table.pop(name, None)
            self.__dict__.pop(name, None)
            (params if isinstance(value, Parameter) else modules)[name] = value
        elif name in buffers:
            buffers[name] = value  # reassigning a buffer keeps it a buffer
        else:
            params.pop(name, None)
            modules.pop(name, None)
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for table in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(table)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def register_buffer(self, name: str, array, persistent: bool = True) -> None:
        """A non-trained array saved in the state dict (unless ``persistent=False``)."""
        self._buffers[name] = array
        if not persistent:
            self._non_persistent.add(name)

    def register_module(self, name: str, module: Module) -> None:
        self._modules[name] = module

    # --- traversal ---------------------------------------------------------------------
    def named_modules(self, prefix: str = "", remove_duplicate: bool = True,
                      _memo: set | None = None) -> Iterator[tuple[str, Module]]:
        """Every sub-module with its dotted path, this one first (path ``prefix``). A module reachable by
        two paths (shared, as the C4 model's res5 by its box and mask heads) comes once, at its first
        path, unless ``remove_duplicate`` is False; so do its parameters, as in torch."""
        if remove_duplicate:
            _memo = set() if _memo is None else _memo
            if id(self) in _memo:
                return
            _memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, remove_duplicate, _memo)

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for path, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                yield (f"{path}.{name}" if path else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, object]]:
        for path, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                yield (f"{path}.{name}" if path else name), b

    # --- state dict ----------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Parameters and persistent buffers by dotted name; arrays are shared, not copied. A shared
        module's arrays appear under each of its paths, as in torch's state dicts."""
        out = OrderedDict()
        for path, module in self.named_modules(remove_duplicate=False):
            for name, p in module._parameters.items():
                out[f"{path}.{name}" if path else name] = p.data
            for name, b in module._buffers.items():
                if name not in module._non_persistent:
                    out[f"{path}.{name}" if path else name] = b
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> LoadResult:
        """Copy arrays into the existing parameters and buffers, in place.

        Values may be any array-like (NumPy, CuPy, or objects with ``.numpy()``). Float
        values are cast to the parameter's dtype, as torch does; a shape mismatch raises
        ValueError naming the key and both shapes, a float/integer mismatch TypeError. With
        ``strict``, missing and unexpected keys raise ValueError naming them.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: state_dict must be a dict {{name: array}} (e.g. from "
                            f"mrcnn_np.convert.load_safetensors), got {describe(state_dict)}")
        check_bool("load_state_dict", "strict", strict)
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        checked = []  # every value is checked before any is copied: a refused load changes nothing
        for key, value in state_dict.items():
            if key not in own:
                continue
            current = own[key]
            value = _as_array(value, current, key)
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(
                    f"load_state_dict: {key}: expected shape {tuple(current.shape)}, got {tuple(value.shape)}"
                )
            kind = value.dtype.kind
            if kind not in "biuf" or (kind == "f") != (current.dtype.kind == "f") or (kind == "b") != (
                    current.dtype.kind == "b"):
                raise TypeError(
                    f"load_state_dict: {key}: expected dtype {current.dtype}, got {value.dtype}"
                )
            if kind == "f" and value.size and not bool((abs(value) < float("inf")).all()):
                raise ValueError(f"load_state_dict: {key} holds NaN or infinite values")
            checked.append((current, value))
        for current, value in checked:
            current[...] = value
        return LoadResult(missing, unexpected)

    # --- modes, gradients, dtype, device ------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        mode = check_bool(f"{type(self).__name__}.train", "mode", mode)
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        requires_grad = check_bool(f"{type(self).__name__}.requires_grad_", "requires_grad", requires_grad)
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, dtype=None, device: str | None = None) -> Module:
        """Convert floating parameters and buffers to ``dtype`` (float32 or float64) and/or move them
        to ``device`` ("cpu" or "cuda"; ``model.to("cuda")`` is read as a device, as in torch)."""
        op = f"{type(self).__name__}.to"
        if isinstance(dtype, str) and dtype in ("cpu", "cuda", "gpu") and device is None:
            dtype, device = None, dtype  # model.to("cuda"), as in torch
        elif isinstance(dtype, str) and device is None and not hasattr(np, dtype):
            raise ValueError(f"{op}: {dtype!r} is neither a dtype (float32, float64) nor a device ('cpu', 'cuda')")
        if dtype is not None:
            dtype = check_float_dtype(op, "dtype", dtype)
        if device is not None:
            device = check_device(device, op)

        def convert(a):
            if device is not None:
                a = to_device(a, device)
            if dtype is not None and a.dtype.kind == "f":
                a = a.astype(dtype)
            return a

        for m in self.modules():
            for p in m._parameters.values():
                p.data = convert(p.data)
                p.grad = None
            for name, b in list(m._buffers.items()):
                m._buffers[name] = convert(b)
        return self

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda"``: where the parameters and buffers live (``"cpu"`` for a module
        without any)."""
        for a in (*(p.data for p in self.parameters()), *(b for _, m in self.named_modules()
                                                           for b in m._buffers.values())):
            return device_of(a)
        return "cpu"

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + (")" if len(lines) == 1 else "\n)")


def _as_array(value, like, key: str = "value"):
    """Turn a state-dict value into an array on ``like``'s device (TypeError naming ``key`` for
    what is no array of numbers)."""
    if hasattr(value, "detach") and hasattr(value, "numpy") and not isinstance(value, Tensor):
        value = value.detach().cpu().numpy()  # a torch tensor
    elif isinstance(value, Tensor):
        value = value.data
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"load_state_dict: {key}: expected an array, got {describe(value)}")
    xp = get_array_module(like)
    try:
        return xp.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"load_state_dict: {key}: expected an array of numbers; converting it failed: {exc}") \
            from None


# --- containers and layers -------------------------------------------------------------------
class Sequential(Module):
    """Modules applied in order; children are named ``"0"``, ``"1"``, ... like torch."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            self._modules[str(i)] = m

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules registered as ``"0"``, ``"1"``, ... (``torch.nn.ModuleList``)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> None:
        self._modules[str(len(self._modules))] = module

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Conv2d(Module):
    """``weight (C_out, C_in, kh, kw)``, ``bias (C_out,)``; torch's default initialisation."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True, rng=None, dtype=np.float32):
        super().__init__()
        kh, kw = pair(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = Parameter(np.empty((out_channels, in_channels, kh, kw), dtype=dtype))
        self.bias = Parameter(np.empty(out_channels, dtype=dtype)) if bias else None
        default_weight_and_bias_(self.weight.data, self.bias.data if bias else None, make_rng(rng))

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        o, i, kh, kw = self.weight.shape
        return f"{i}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}"


class ConvTranspose2d(Module):
    """``weight (C_in, C_out, kh, kw)``, ``bias (C_out,)``; torch's default initialisation."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, bias: bool = True, rng=None, dtype=np.float32):
        super().__init__()
        kh, kw = pair(kernel_size)
        self.stride, self.padding = stride, padding
        self.output_padding, self.dilation = output_padding, dilation
        self.weight = Parameter(np.empty((in_channels, out_channels, kh, kw), dtype=dtype))
        self.bias = Parameter(np.empty(out_channels, dtype=dtype)) if bias else None
        default_weight_and_bias_(self.weight.data, self.bias.data if bias else None, make_rng(rng))

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.dilation)


class Linear(Module):
    """``weight (out_features, in_features)``, ``bias (out_features,)``."""

    def __init__(self, in_features, out_features, bias: bool = True, rng=None, dtype=np.float32):
        super().__init__()
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        self.bias = Parameter(np.empty(out_features, dtype=dtype)) if bias else None
        default_weight_and_bias_(self.weight.data, self.bias.data if bias else None, make_rng(rng))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class FrozenBatchNorm2d(Module):
    """torchvision.ops.FrozenBatchNorm2d: four buffers, nothing trains."""

    def __init__(self, num_features: int, eps: float = 1e-5, dtype=np.float32):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", np.ones(num_features, dtype=dtype))
        self.register_buffer("bias", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))

    def forward(self, x):
        return F.frozen_batch_norm2d(x, self.weight, self.bias, self.running_mean,
                                     self.running_var, self.eps)

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}"


class BatchNorm2d(Module):
    """Trainable batch norm: batch statistics in ``train()``, running ones in ``eval()``."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = Parameter(np.ones(num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
        self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))

    def forward(self, x):
        if self.training:
            self.num_batches_tracked += 1
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.weight.shape[0]}, eps={self.eps}, momentum={self.momentum}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), torch's ``nn.Flatten()`` (start_dim 1)."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1)  # (N, C, h, w) -> (N, C*h*w)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.dilation = padding, dilation

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
