"""Weights in and out: torchvision state dicts <-> ours, and ``.safetensors`` files.

Our parameter and buffer names *are* torchvision's state-dict keys, so converting is a
change of array type, not a renaming. The one unavoidable exception: torchvision's
checkpoints of networks trained with ordinary BatchNorm carry
``*.num_batches_tracked`` counters that a FrozenBatchNorm2d has no slot for;
torchvision's own FrozenBatchNorm2d drops them on load, and so does
:func:`load_torchvision_state_dict`.

Torch is imported only inside the functions that need it (it is a reference
dependency, never a runtime one). Weights are saved with safetensors: no pickle is ever
loaded.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from .backend import to_numpy


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "converting to or from torchvision needs torch; install the reference extra: "
            "pip install 'mrcnn-np[reference]'"
        ) from e
    return torch


def state_dict_from_torch(source) -> OrderedDict:
    """A torch ``nn.Module`` or state dict -> ``{key: np.ndarray}`` (copies, same dtypes).
    Values that already are arrays are copied as they are."""
    sd = source.state_dict() if hasattr(source, "state_dict") else source
    return OrderedDict((k, v.detach().cpu().numpy().copy() if hasattr(v, "detach") else np.array(v, copy=True))
                       for k, v in sd.items())


def state_dict_to_torch(state_dict) -> OrderedDict:
    """``{key: array}`` (ours or a module's ``state_dict()``) -> ``{key: torch.Tensor}`` (copies)."""
    torch = _torch()
    source = state_dict.state_dict() if hasattr(state_dict, "state_dict") else state_dict
    return OrderedDict((k, torch.from_numpy(np.array(to_numpy(v), copy=True))) for k, v in source.items())


def load_torchvision_state_dict(model, source, strict: bool = True):
    """Load a torchvision module or state dict into our ``model`` (in place); returns the
    result of ``model.load_state_dict``. Drops ``num_batches_tracked`` keys our model has no
    place for (FrozenBatchNorm2d), exactly as torchvision does."""
    sd = state_dict_from_torch(source)
    ours = model.state_dict()
    sd = OrderedDict(
        (k, v) for k, v in sd.items() if not (k.endswith("num_batches_tracked") and k not in ours)
    )
    return model.load_state_dict(sd, strict=strict)


def export_to_torchvision(model, target, strict: bool = True):
    """Copy our ``model``'s weights into a torchvision module ``target`` (in place)."""
    return target.load_state_dict(state_dict_to_torch(model), strict=strict)


def save_safetensors(model_or_state_dict, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write a model's state dict (or a ``{key: array}`` dict) to a ``.safetensors`` file,
    atomically (a temporary file renamed into place)."""
    from safetensors.numpy import save_file

    sd = model_or_state_dict
    if hasattr(sd, "state_dict"):
        sd = sd.state_dict()
    arrays = {k: np.ascontiguousarray(to_numpy(v)) for k, v in sd.items()}
    tmp = f"{os.fspath(path)}.tmp"
    save_file(arrays, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


def load_safetensors(path: str | os.PathLike) -> OrderedDict:
    """Read a ``.safetensors`` file -> ``{key: np.ndarray}`` in the file's order."""
    from safetensors.numpy import load_file

    return OrderedDict(load_file(os.fspath(path)))


def load_weights(model, path: str | os.PathLike, strict: bool = True):
    """Load a ``.safetensors`` file into ``model``."""
    return model.load_state_dict(load_safetensors(path), strict=strict)
