"""A strict stand-in for CuPy: NumPy arrays dressed as device arrays, with CuPy's refusals.

Device-agnostic code (``xp = backend.get_array_module(x)``) runs under this module in CI,
on machines without a GPU, and must give the NumPy run's results bit for bit. Every place
where the code would break under CuPy -- an implicit host conversion, a NumPy array mixed
with a device array, ``where=`` on a ufunc -- breaks here the same way, and every
device-to-host read is counted, so a test can hold the code to a budget of syncs.

What is modelled, and where CuPy documents it (CuPy 14):

* no implicit conversion: ``numpy.asarray(d)`` raises TypeError "Implicit conversion to a
  NumPy array is not allowed..."; ``.get()`` / ``cupy.asnumpy`` and ``cupy.asarray`` /
  ``cupy.array`` / ``.set()`` are the explicit transfers (user guide, "Differences between
  CuPy and NumPy"; cupy._core.core ``ndarray.__array__``, ``get``, ``set``);
* ufuncs take device arrays and scalars only ("Universal Functions only work with CuPy
  array or scalar"): anything else is TypeError "Unsupported type <class ...>", so
  ``d + host``, ``host + d`` and ``d + [1]`` fail; ufunc keywords are ``out``, ``dtype``
  and ``casting``, anything else (``where=``) is TypeError "Wrong arguments {...}"
  (cupy.ufunc reference; cupy._core._kernel);
* NEP 13 / NEP 18: ``numpy.exp(d)`` and ``numpy.sum(d)`` dispatch to cupy and return device
  arrays; ``__array_function__`` handles cupy.ndarray and numpy.ndarray arguments and hands
  them to the cupy function, which refuses the host ones (user guide, "Interoperability");
  ``numpy.add.at(d, ...)`` dispatches to ``cupy.add.at`` since CuPy 12.1 (cupy PR #7572);
* binary operators follow cupy.ndarray's rule: an operand that is neither a device array
  nor a scalar is passed to the ufunc (TypeError) unless it defines
  ``__array_ufunc__ = None`` or a higher ``__array_priority__`` (100 here, as in CuPy);
* reductions return 0-d device arrays; ``bool``, ``int``, ``float``, ``item``, ``tolist``,
  ``repr`` read the value from the device (a sync); ``len`` and iteration do not;
  ``__index__`` is intentionally absent in CuPy (cupy issue #5784), so ``range(d)`` and
  ``x[:d]`` fail;
* indexing takes device arrays, host integer/bool arrays and lists (copied to the device);
  a device boolean mask in ``x[mask]`` needs a sync to size the result; ``x[i] = host`` is
  allowed (copied); ``nonzero``, ``unique``, one-argument ``where`` ... sync;
* split points, shapes, repeats, pad widths and ``take`` indices may be host data;
* sorting is always stable (``kind`` other than None/"stable" is refused, cupy.argsort).

Not modelled: out-of-bounds integer indices wrap in CuPy and raise here; duplicate indices
in ``__setitem__`` are undefined in CuPy and last-wins here; no ``__cuda_array_interface__``
(numba.cuda kernels cannot take these arrays); ``cupy.random`` is refused (the library draws
randomness on the host). Where CuPy's behaviour is undocumented, the stand-in allows it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.machinery
import sys
import types
import warnings

import numpy as np

IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly.")
_SCALARS = frozenset({int, float, bool, complex} | {np.dtype(c).type for c in "?bBhHiIlLqQefdFD"})
_COMPARISONS = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal"}


# --- counters --------------------------------------------------------------------------
@dataclasses.dataclass
class Counts:
    """``syncs``: device-to-host reads (bool/int/float/item/tolist/repr, ``.get()``, a device
    boolean mask, ``nonzero``/``unique``, stream/device synchronize); ``to_host``: explicit
    copies to the host (``.get()``, ``asnumpy``); ``to_device``: host data copied to the device
    (``asarray``/``array`` of host data, ``.set()``, host index arrays and setitem values)."""

    syncs: int = 0
    to_host: int = 0
    to_device: int = 0

    def reset(self) -> None:
        self.syncs = self.to_host = self.to_device = 0


counts = Counts()


@contextlib.contextmanager
def counting():
    """``with counting() as c: ...`` -- afterwards ``c`` holds what the block did."""
    start, window = dataclasses.replace(counts), Counts()
    try:
        yield window
    finally:
        for f in ("syncs", "to_host", "to_device"):
            setattr(window, f, getattr(counts, f) - getattr(start, f))


def _sync() -> None:
    counts.syncs += 1


# --- argument handling -----------------------------------------------------------------
def _unsupported(x) -> TypeError:
    return TypeError(f"Unsupported type {type(x)}")


def _operand(x):
    """A ufunc operand: a device array or a scalar, nothing else (cupy._core._kernel)."""
    if isinstance(x, ndarray):
        return x._a
    if type(x) in _SCALARS:
        return x
    raise _unsupported(x)


def _arg(x, host: str | None = None):
    """A function argument: device arrays unwrapped; a host array is refused unless ``host``
    says this parameter takes host data ("copy": counted as a transfer, "meta": shape-like)."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        if host is None:
            raise _unsupported(x)
        counts.to_device += host == "copy"
        return x
    if type(x) is list:
        return [_arg(v, host) for v in x]
    if type(x) is tuple:
        return tuple(_arg(v, host) for v in x)
    return x


def _wrap(r):
    """NumPy results as device arrays (scalars become 0-d arrays, as CuPy returns)."""
    if isinstance(r, np.ndarray):
        return ndarray._of(r)
    if isinstance(r, np.generic):
        return ndarray._of(np.asarray(r))
    if type(r) is list:
        return [_wrap(v) for v in r]
    if isinstance(r, tuple):
        items = [_wrap(v) for v in r]
        return type(r)(*items) if hasattr(r, "_fields") else tuple(items)
    return r


def _index(key, mask_sync: bool):
    """Unwrap an index: device arrays pass (a boolean mask costs a sync on getitem); host
    arrays and lists are copied to the device."""
    if type(key) is tuple:
        return tuple(_index(k, mask_sync) for k in key)
    if isinstance(key, ndarray):
        if mask_sync and key.dtype == np.bool_:
            _sync()
        return key._a
    if isinstance(key, (np.ndarray, list)):
        counts.to_device += 1
        return _arg(key, "meta")
    return key


def _no_where(kwargs):
    if "where" in kwargs:  # cupy's reductions have no where= parameter
        raise TypeError("cupy: unexpected keyword argument 'where' (not supported by CuPy)")


def _stable(kwargs):
    kind = kwargs.pop("kind", None)
    if kind not in (None, "stable"):  # cupy.sort/argsort: "any other options are not accepted"
        raise ValueError(f"cupy sorts are always stable; kind={kind!r} is not supported")
    kwargs["kind"] = "stable"


# --- the array -------------------------------------------------------------------------
def _should_use_rop(x, y) -> bool:
    """cupy._core.core._should_use_rop: defer to ``y`` only if it opts out of ufuncs or,
    lacking ``__array_ufunc__``, has a higher ``__array_priority__``."""
    try:
        y_ufunc = y.__array_ufunc__
    except AttributeError:
        return getattr(x, "__array_priority__", 0) < getattr(y, "__array_priority__", 0)
    return y_ufunc is None


class ndarray:  # noqa: N801 -- cupy's name
    """Stand-in for ``cupy.ndarray``: holds a NumPy array ``_a`` that never meets the host
    implicitly. ``ndarray(shape, dtype)`` allocates (uninitialised), as CuPy's does."""

    __module__ = "cupy"  # what mrcnn_np.backend.is_cupy_array looks at
    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = np.empty(shape, dtype, order=order)

    @classmethod
    def _of(cls, a: np.ndarray) -> ndarray:
        obj = object.__new__(cls)
        obj._a = a
        return obj

    # explicit transfers
    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        _sync()
        counts.to_host += 1
        if out is None:
            return np.array(self._a, order=order)
        if not isinstance(out, np.ndarray) or out.dtype != self.dtype or out.shape != self.shape:
            raise TypeError(f"out must be a numpy.ndarray of {self.dtype} {self.shape}")
        out[...] = self._a
        return out

    def set(self, arr, stream=None) -> None:
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        counts.to_device += 1
        self._a[...] = arr

    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT)

    # value reads: each one waits for the device (int, float, repr ... are set below)
    def _read(self) -> np.ndarray:
        _sync()
        return self._a

    def __bool__(self) -> bool:
        if self.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous. Returning False",
                          DeprecationWarning, stacklevel=2)
            return False
        if self.size > 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous. "
                             "Use a.any() or a.all()")
        return bool(self._read())

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._read().item()

    def __reduce__(self):  # pickling copies to the host, as cupy's does
        return (cupy.array, (self.get(),))

    def __copy__(self, memo=None):
        return self.copy()

    __deepcopy__ = __copy__

    # containers: the shape is on the host, no sync
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key):
        return _wrap(self._a[_index(key, True)])

    def __setitem__(self, key, value):
        if isinstance(value, (np.ndarray, list)):
            counts.to_device += 1
        self._a[_index(key, False)] = _arg(value, "meta")

    # NEP 13 / NEP 18
    def __array_ufunc__(self, uf, method, *inputs, **kwargs):
        if "out" in kwargs:
            if len(kwargs["out"]) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = kwargs["out"][0]
        mine = getattr(cupy, uf.__name__, None)
        if not isinstance(mine, ufunc):
            return NotImplemented
        if method != "__call__":
            return getattr(mine, method)(*inputs, **kwargs)  # CuPy >= 12.1 (cupy PR #7572)
        for x in inputs + ((kwargs["out"],) if "out" in kwargs else ()):
            if not isinstance(x, (ndarray, np.ndarray)) and type(x) not in _SCALARS:
                return NotImplemented
        if uf.__name__ in _COMPARISONS:  # cupy's workaround for numpy/numpy#12142
            inputs = tuple(x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x for x in inputs)
        return mine(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        try:
            target = functools.reduce(getattr, func.__module__.split(".")[1:], cupy)
            target = getattr(target, func.__name__)
        except AttributeError:
            return NotImplemented
        if any(t not in (ndarray, np.ndarray) for t in types):
            return NotImplemented
        return target(*args, **kwargs)

    def __pos__(self):
        return self

    def __matmul__(self, other):
        if not isinstance(other, ndarray) and _should_use_rop(self, other):
            return NotImplemented
        return cupy.matmul(self, other)

    def __rmatmul__(self, other):
        return cupy.matmul(other, self)


# metadata lives on the host: no sync
ndarray.shape = property(lambda s: s._a.shape, lambda s, v: setattr(s._a, "shape", v))
for _name in ("dtype", "ndim", "size", "strides", "itemsize", "nbytes", "flags"):
    setattr(ndarray, _name, property(lambda s, n=_name: getattr(s._a, n)))
for _name in ("T", "real", "imag"):
    setattr(ndarray, _name, property(lambda s, n=_name: ndarray._of(getattr(s._a, n))))
ndarray.device = property(lambda s: Device(0))
for _name, _convert in {"__int__": int, "__float__": float, "__complex__": complex, "__repr__": repr,
                        "__str__": str, "__format__": format, "tolist": np.ndarray.tolist,
                        "tobytes": np.ndarray.tobytes}.items():
    setattr(ndarray, _name, lambda s, *a, c=_convert: c(s._read(), *a))
for _name, _uf in {"__neg__": "negative", "__abs__": "absolute", "__invert__": "invert"}.items():
    setattr(ndarray, _name, lambda s, u=_uf: getattr(cupy, u)(s))


def _binary(name):
    def op(self, other):  # through numpy's ufunc, so __array_ufunc__ refuses host operands
        if isinstance(other, ndarray) or not _should_use_rop(self, other):
            if name in _COMPARISONS and isinstance(other, np.ndarray) and other.ndim == 0:
                other = other.item()
            return getattr(np, name)(self, other)
        return NotImplemented

    def rop(self, other):  # other <op> self, other's own op declined
        return getattr(cupy, name)(other, self)

    def iop(self, other):
        return getattr(cupy, name)(self, other, out=self)

    return op, rop, iop


for _dunder, _uf in {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
                     "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "and": "bitwise_and",
                     "or": "bitwise_or", "xor": "bitwise_xor", "lshift": "left_shift",
                     "rshift": "right_shift"}.items():
    _op, _rop, _iop = _binary(_uf)
    setattr(ndarray, f"__{_dunder}__", _op)
    setattr(ndarray, f"__r{_dunder}__", _rop)
    setattr(ndarray, f"__i{_dunder}__", _iop)
for _dunder, _uf in {"lt": "less", "le": "less_equal", "eq": "equal", "ne": "not_equal", "gt": "greater",
                     "ge": "greater_equal"}.items():
    setattr(ndarray, f"__{_dunder}__", _binary(_uf)[0])


def _method(name, host=None, sync=False, sort=False):
    """A method delegated to the NumPy payload, with CuPy's argument rules."""

    def method(self, *args, **kwargs):
        _no_where(kwargs)
        if sort:
            _stable(kwargs)
        if sync:
            _sync()
        r = getattr(self._a, name)(*(_arg(a, host) for a in args), **{k: _arg(v, host) for k, v in kwargs.items()})
        return self if r is self._a else _wrap(r)

    method.__name__ = name
    return method


for _name in ("all any argmax argmin astype clip conj conjugate copy cumprod cumsum diagonal dot flatten "
              "max mean min prod ravel round searchsorted squeeze std sum swapaxes trace var view").split():
    setattr(ndarray, _name, _method(_name))
for _name in ("reshape", "transpose", "repeat", "fill"):  # shapes, axes, repeats, a 0-d fill value
    setattr(ndarray, _name, _method(_name, host="meta"))
for _name in ("take", "put"):  # host indices are copied to the device
    setattr(ndarray, _name, _method(_name, host="copy"))
ndarray.sort, ndarray.argsort = _method("sort", sort=True), _method("argsort", sort=True)
ndarray.nonzero, ndarray.compress = _method("nonzero", sync=True), _method("compress", sync=True)


# --- ufuncs ----------------------------------------------------------------------------
class ufunc:  # noqa: N801 -- cupy's name
    """Stand-in for ``cupy.ufunc``: device arrays and scalars in, ``out``/``dtype``/``casting``
    the only keywords. The methods ``at``/``reduce``/``accumulate``/``reduceat``/``outer``
    exist for selected ufuncs in CuPy (cupy issue #7082); here for all (permissive)."""

    __module__ = "cupy"

    def __init__(self, npu: np.ufunc):
        self._u, self.__name__, self.name = npu, npu.__name__, npu.__name__
        self.nin, self.nout, self.nargs = npu.nin, npu.nout, npu.nargs

    def __repr__(self):
        return f"<ufunc '{self.name}'>"

    def __call__(self, *args, out=None, dtype=None, casting="same_kind", **kwargs):
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        ins = [_operand(a) for a in args]
        if out is None:
            return _wrap(self._u(*ins, dtype=dtype, casting=casting))
        if not isinstance(out, ndarray):
            raise TypeError("Output arguments must be cupy.ndarray")
        self._u(*ins, out=out._a, dtype=dtype, casting=casting)
        return out

    def _call(self, method, array, *args, out=None, **kwargs):
        _no_where(kwargs)
        if not isinstance(array, ndarray):
            raise _unsupported(array)
        if out is not None:
            kwargs["out"] = out._a if isinstance(out, ndarray) else _operand(out)
        r = getattr(self._u, method)(array._a, *args, **kwargs)
        return out if out is not None else _wrap(r)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise _unsupported(a)
        self._call("at", a, _index(indices, False), *(() if b is None else (_operand(b),)))

    def reduce(self, array, *args, **kwargs):
        return self._call("reduce", array, *args, **kwargs)

    def accumulate(self, array, *args, **kwargs):
        return self._call("accumulate", array, *args, **kwargs)

    def reduceat(self, array, indices, *args, **kwargs):
        return self._call("reduceat", array, _index(indices, False), *args, **kwargs)

    def outer(self, A, B, **kwargs):
        return _wrap(self._u.outer(_operand(A), _operand(B), **kwargs))


# --- module functions ------------------------------------------------------------------
_CREATE = {"array", "asarray", "asanyarray"}  # host data in, counted as a transfer
_HOST = {  # name: (positions, keywords, kind) of parameters that may be host data
    **dict.fromkeys(["split", "array_split", "hsplit", "vsplit", "dsplit"], ({1}, {"indices_or_sections"}, "meta")),
    "reshape": ({1}, {"newshape", "shape"}, "meta"), "broadcast_to": ({1}, {"shape"}, "meta"),
    "tile": ({1}, {"reps"}, "meta"), "pad": ({1}, {"pad_width", "constant_values"}, "meta"),
    "repeat": ({1}, {"repeats"}, "meta"), "transpose": ({1}, {"axes"}, "meta"),
    **dict.fromkeys(["zeros", "ones", "empty"], ({0}, {"shape"}, "meta")),
    "full": ({0, 1}, {"shape", "fill_value"}, "meta"),
    "take": ({1}, {"indices"}, "copy"),  # host indices are copied to the device
}
_SYNC = {"nonzero", "flatnonzero", "argwhere", "unique", "unique_values", "unique_counts", "unique_inverse",
         "unique_all", "extract", "compress"}
_DEVICE_SCALAR = {"count_nonzero", "array_equal", "array_equiv", "allclose"}  # 0-d device results in CuPy


def _function(name: str, f):
    positions, keywords, host = _HOST.get(name, ((), (), None))

    def wrapper(*args, **kwargs):
        if name != "copyto":  # cupy.copyto is the one function here with a where= parameter
            _no_where(kwargs)
        if name in ("sort", "argsort"):
            _stable(kwargs)
        if name in _SYNC or (name == "where" and len(args) + len(kwargs) == 1):
            _sync()
        args = [_arg(a, host if i in positions else None) for i, a in enumerate(args)]
        kwargs = {k: _arg(v, host if k in keywords else None) for k, v in kwargs.items()}
        r = f(*args, **kwargs)
        if name in _DEVICE_SCALAR and not isinstance(r, np.ndarray):
            r = np.asarray(r)
        return _wrap(r)

    wrapper.__name__ = wrapper.__qualname__ = name
    return wrapper


def _to_device(name, np_func):
    def create(obj, *args, **kwargs):
        if isinstance(obj, ndarray):
            r = np_func(obj._a, *args, **kwargs)
            return obj if r is obj._a else ndarray._of(r)
        if not (isinstance(obj, (list, tuple)) and any(isinstance(v, ndarray) for v in obj)):
            counts.to_device += 1  # host data; a sequence of device arrays is joined on the device
        return ndarray._of(np.array(np_func(_arg(obj, "meta"), *args, **kwargs)))  # a copy: never aliases the host

    create.__name__ = name
    return create


def get_array_module(*args):
    return cupy if any(isinstance(a, ndarray) for a in args) else np


def asnumpy(a, stream=None, order="C", out=None):
    return a.get(stream, order, out) if isinstance(a, ndarray) else np.asarray(a, order=order)


def _namespace(name: str, source: types.ModuleType) -> types.ModuleType:
    """A module whose attributes are ``source``'s (numpy's), translated on first use."""
    mod = types.ModuleType(name, f"Stand-in for {name} (tests/fake_cupy.py)")
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)  # importlib.util.find_spec reads it

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        try:
            obj = getattr(source, attr)
        except AttributeError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None
        if obj is np.ndarray:
            value = ndarray
        elif isinstance(obj, np.ufunc):
            value = ufunc(obj)
        elif isinstance(obj, types.ModuleType):
            value = _namespace(f"{name}.{attr}", obj)
        elif isinstance(obj, type) or not callable(obj):
            value = obj  # dtypes, scalar types, finfo, errstate, constants
        elif attr in _CREATE:
            value = _to_device(attr, obj)
        else:
            value = _function(attr, obj)
        setattr(mod, attr, value)
        return value

    mod.__getattr__ = __getattr__
    return mod


# --- cupy.cuda -------------------------------------------------------------------------
class _Context:
    def use(self):
        return self

    def synchronize(self):  # waits for the device
        _sync()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Stream(_Context):
    """A CUDA stream: the null stream (``ptr`` 0)."""

    def __init__(self, null=False, non_blocking=False, ptr=0):
        self.ptr = 0


class Device(_Context):
    """The one CUDA device, ``Device(0)``."""

    def __init__(self, device=0):
        self.id = int(device)

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    __hash__ = object.__hash__

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


cuda = types.ModuleType("cupy.cuda", "Stand-in for cupy.cuda: one device, the null stream.")
cuda.__spec__ = importlib.machinery.ModuleSpec("cupy.cuda", None)
cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0)
cuda.Device, cuda.Stream, cuda.is_available = Device, Stream, lambda: True
_NULL_STREAM = Stream()
cuda.get_current_stream = lambda device=None: _NULL_STREAM

cupy = _namespace("cupy", np)
cupy.ndarray, cupy.ufunc, cupy.cuda = ndarray, ufunc, cuda
cupy.get_array_module, cupy.asnumpy = get_array_module, asnumpy
cupy.counts, cupy.counting = counts, counting  # stand-in extras, for tests


def _refuse_random(attr):
    if attr.startswith("__"):
        raise AttributeError(attr)
    raise AttributeError(f"cupy.random.{attr}: device random numbers are not modelled by the stand-in "
                         "(mrcnn_np draws its randomness on the host)")


cupy.random = types.ModuleType("cupy.random")
cupy.random.__getattr__ = _refuse_random


# --- installing ------------------------------------------------------------------------
_saved: list[dict] = []


def install() -> types.ModuleType:
    """Make ``import cupy`` (and ``mrcnn_np.backend``) find the stand-in; counts restart."""
    from mrcnn_np import backend

    _saved.append({k: sys.modules.get(k) for k in ("cupy", "cupy.cuda")})
    sys.modules["cupy"], sys.modules["cupy.cuda"] = cupy, cuda
    backend._cupy.cache_clear()
    counts.reset()
    return cupy


def uninstall() -> None:
    """Put back whatever ``cupy`` was before :func:`install`."""
    from mrcnn_np import backend

    for key, previous in _saved.pop().items():
        if previous is None:
            sys.modules.pop(key, None)
        else:
            sys.modules[key] = previous
    backend._cupy.cache_clear()


@contextlib.contextmanager
def installed():
    """``with installed() as cp: ...`` -- the stand-in is ``cupy`` inside the block."""
    try:
        yield install()
    finally:
        uninstall()
