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

import contextlib
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


# the ablation settings (the paper's Table 2) torchvision has no counterpart for, with torchvision's value
TORCHVISION_SETTINGS = {"roi_pooler": "align", "mask_loss": "sigmoid", "class_agnostic_masks": False,
                        "mask_head": "fcn"}
WEIGHT_SETTINGS = ("class_agnostic_masks", "mask_head")  # those that change the state dict's keys or shapes


def check_torchvision_settings(model, op: str, weights_only: bool = False) -> None:
    """ValueError naming the ablation settings of ``model.config`` (a MaskRCNN's) that torchvision's
    Mask R-CNN lacks: its weights would load but compute something else, or not load at all. With
    ``weights_only``, only the settings that change the state dict's keys or shapes (``mask_head``,
    ``class_agnostic_masks``). Only ``roi_pooler`` counts without the mask branch (the mask settings are
    unused there). Objects without a ``config`` (a state dict, another Module) are not checked."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "mask_branch"):
        return
    differ = [name for name, default in TORCHVISION_SETTINGS.items()
              if getattr(config, name, default) != default and (name == "roi_pooler" or config.mask_branch)
              and (not weights_only or name in WEIGHT_SETTINGS)]
    if differ:
        ours = ", ".join(f"{name}={getattr(config, name)!r}" for name in differ)
        theirs = ", ".join(f"{name}={TORCHVISION_SETTINGS[name]!r}" for name in differ)
        raise ValueError(f"{op}: this model has {ours}, an ablation torchvision's Mask R-CNN does not have ({theirs} "
                         f"there); torchvision's weights convert only to and from a model with torchvision's settings")


def state_dict_to_torch(state_dict) -> OrderedDict:
    """``{key: array}`` (ours or a module's ``state_dict()``) -> ``{key: torch.Tensor}`` (copies). A
    MaskRCNN with an ablation setting torchvision lacks is refused (:func:`check_torchvision_settings`)."""
    check_torchvision_settings(state_dict, "state_dict_to_torch")
    torch = _torch()
    source = state_dict.state_dict() if hasattr(state_dict, "state_dict") else state_dict
    return OrderedDict((k, torch.from_numpy(np.array(to_numpy(v), copy=True))) for k, v in source.items())


def load_torchvision_state_dict(model, source, strict: bool = True):
    """Load a torchvision module or state dict into our ``model`` (in place); returns the
    result of ``model.load_state_dict``. Drops ``num_batches_tracked`` keys our model has no
    place for (FrozenBatchNorm2d), exactly as torchvision does. A model whose ablation settings change
    its weights (``mask_head="mlp"``, ``class_agnostic_masks``) is refused naming the setting; one with
    torchvision's weights but another pooler or mask loss loads them (to compare, e.g., RoIPool)."""
    check_torchvision_settings(model, "load_torchvision_state_dict", weights_only=True)
    sd = state_dict_from_torch(source)
    ours = model.state_dict()
    sd = OrderedDict(
        (k, v) for k, v in sd.items() if not (k.endswith("num_batches_tracked") and k not in ours)
    )
    return model.load_state_dict(sd, strict=strict)


def export_to_torchvision(model, target, strict: bool = True):
    """Copy our ``model``'s weights into a torchvision module ``target`` (in place). Only for torchvision's
    settings: a model with an ablation setting (``roi_pooler``, ``mask_loss``, ``class_agnostic_masks``,
    ``mask_head``) other than torchvision's is refused with a ValueError naming it."""
    check_torchvision_settings(model, "export_to_torchvision")
    return target.load_state_dict(state_dict_to_torch(model), strict=strict)


class WeightsFileError(ValueError):
    """A weights file that is not a complete ``.safetensors`` file (truncated, a pickle, not weights)."""


def _safetensors_error(path, error) -> WeightsFileError:
    """A readable :class:`WeightsFileError` for a file safetensors could not parse: says what the file looks
    like (a torch pickle or zip, or a truncated ``.safetensors``)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80" or head == b"PK\x03\x04":
        what = ("a torch.save file (pickle), not .safetensors; mrcnn_np never unpickles: convert torchvision "
                "weights with `mrcnn-np convert`")
    else:
        what = f"not a complete .safetensors file (truncated or damaged: {error})"
    return WeightsFileError(f"{path}: {what}")


def _open_weights(path, read):
    """``read(path)`` with safetensors' parse errors and a missing file turned into named errors."""
    from safetensors import SafetensorError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        return read(path)
    except SafetensorError as e:
        raise _safetensors_error(path, e) from None


def save_safetensors(model_or_state_dict, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write a model's state dict (or a ``{key: array}`` dict) to a ``.safetensors`` file,
    atomically (a temporary file, flushed to disk, renamed into place: a crash leaves the old
    file or the new one, never half of one)."""
    from safetensors.numpy import save_file

    sd = model_or_state_dict
    if hasattr(sd, "state_dict"):
        sd = sd.state_dict()
    arrays = {k: np.array(to_numpy(v), order="C") for k, v in sd.items()}  # (ascontiguousarray makes 0-d 1-d)
    tmp = f"{os.fspath(path)}.tmp"
    try:
        save_file(arrays, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
    except BaseException:  # e.g. the disk is full: leave no partial file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # safetensors creates the file owner-only; give it the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def load_safetensors(path: str | os.PathLike) -> OrderedDict:
    """Read a ``.safetensors`` file -> ``{key: np.ndarray}`` in the file's order. A missing file is a
    FileNotFoundError, a truncated one or a pickle a :class:`WeightsFileError`, both naming the file."""
    from safetensors.numpy import load_file

    return OrderedDict(_open_weights(path, load_file))


def load_weights(model, path: str | os.PathLike, strict: bool = True):
    """Load a ``.safetensors`` file into ``model``."""
    return model.load_state_dict(load_safetensors(path), strict=strict)


CONFIG_KEY = "mrcnn_np.config"  # safetensors metadata entry holding the model's configuration as JSON


def save_model(model, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Weights and configuration of a :class:`~mrcnn_np.model.mask_rcnn.MaskRCNN` in one ``.safetensors``
    file (the configuration as JSON in the metadata), so :func:`load_model` can rebuild it."""
    import json

    from .config import config_to_dict

    save_safetensors(model, path, {**(metadata or {}), CONFIG_KEY: json.dumps(config_to_dict(model.config))})


def load_model(path: str | os.PathLike):
    """The :class:`~mrcnn_np.model.mask_rcnn.MaskRCNN` saved by :func:`save_model`, in eval mode."""
    import json

    from .config import config_from_dict
    from .model.mask_rcnn import MaskRCNN

    metadata = read_metadata(path)
    if CONFIG_KEY not in metadata:
        raise ValueError(f"{path}: no model configuration in this file (was it written by mrcnn_np.convert.save_model? "
                         "otherwise build the model yourself and call load_weights)")
    try:
        config = config_from_dict(json.loads(metadata[CONFIG_KEY]))
    except (ValueError, TypeError) as e:
        raise WeightsFileError(f"{path}: the model configuration stored in this file is unusable: {e}") from None
    model = MaskRCNN(config)
    load_weights(model, path)
    return model.eval()


def read_metadata(path: str | os.PathLike) -> dict:
    """The string metadata of a ``.safetensors`` file (``{}`` when it has none)."""
    from safetensors import safe_open

    def read(p):
        with safe_open(p, framework="numpy") as f:
            return dict(f.metadata() or {})

    return _open_weights(path, read)


def convert_torchvision_file(source: str | os.PathLike, target: str | os.PathLike):
    """A torchvision ``maskrcnn_resnet50_fpn`` or ``fasterrcnn_resnet50_fpn`` (or their ``_v2``) state dict
    saved with ``torch.save`` -> ``.safetensors`` with its configuration (:func:`save_model`). The file is
    read with ``torch.load(weights_only=True)`` (no arbitrary pickle); the configuration is read off its
    keys and shapes (:func:`settings_of_state_dict`). Returns the configuration."""
    torch = _torch()
    from .config import resnet50_c4, resnet50_fpn
    from .model.mask_rcnn import MaskRCNN

    if not os.path.isfile(source):
        raise FileNotFoundError(f"{source}: no such file")
    try:
        sd = torch.load(os.fspath(source), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError ... for bad files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsFileError(f"{source}: not a torch state dict that loads with weights_only=True "
                               f"(truncated, or a pickle of arbitrary objects): {first}") from None
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):  # torchvision references' checkpoints
        sd = sd["model"]
    key = "roi_heads.box_predictor.cls_score.weight"
    if not isinstance(sd, dict) or key not in sd:
        raise ValueError(f"{source}: not a torchvision Mask R-CNN or Faster R-CNN state dict (no {key})")
    settings = settings_of_state_dict(sd)
    model = MaskRCNN((resnet50_c4 if settings.pop("architecture") == "c4" else resnet50_fpn)(**settings))
    load_torchvision_state_dict(model, sd)
    save_model(model, target)
    return model.config


def settings_of_state_dict(sd) -> dict:
    """The :class:`~mrcnn_np.config.MaskRCNNConfig` settings that differ from ``resnet50_fpn()`` (or, for
    ``architecture`` "c4", from ``resnet50_c4()``), read off the keys and shapes of a torchvision
    detection state dict: the architecture (a res5 box head: C4), the number of classes (box
    predictor), ResNet-50 or -101 (layer3 blocks), the mask branch, and the v2 recipe's parts --
    BatchNorm2d in the backbone (``num_batches_tracked`` counters; torchvision's own v1 weights have
    FrozenBatchNorm2d, which has none), in the FPN and the heads, the RPN's conv depth and the box head
    (``box_head.0.0.weight``: FastRCNNConvFCHead, its conv widths and fc width)."""
    blocks = {int(k.split(".")[3]) for k in sd if k.startswith("backbone.body.layer3.")}
    settings = {"architecture": "c4" if "roi_heads.box_head.res5.0.conv1.weight" in sd else "fpn",
                "num_classes": int(sd["roi_heads.box_predictor.cls_score.weight"].shape[0]),
                "backbone": "resnet101" if len(blocks) == 23 else "resnet50",
                "mask_branch": any(k.startswith("roi_heads.mask_") for k in sd),
                "frozen_batch_norm": not any(k.startswith("backbone.body.") and k.endswith("num_batches_tracked")
                                             for k in sd),
                "fpn_batch_norm": "backbone.fpn.inner_blocks.0.1.weight" in sd,
                "rpn_conv_depth": len({k.split(".")[3] for k in sd if k.startswith("rpn.head.conv.")}),
                "head_batch_norm": "roi_heads.mask_head.0.1.weight" in sd or "roi_heads.box_head.0.1.weight" in sd}
    if "roi_heads.box_head.0.0.weight" in sd:  # FastRCNNConvFCHead: convs "i.0", then Flatten, then the fc
        convs = sorted({int(k.split(".")[2]) for k in sd if k.startswith("roi_heads.box_head.")
                        and k.split(".")[3:4] == ["0"] and k.endswith(".0.weight")})
        settings["box_head"] = "FastRCNNConvFCHead"
        settings["box_conv_layers"] = tuple(int(sd[f"roi_heads.box_head.{i}.0.weight"].shape[0]) for i in convs)
        settings["representation_size"] = int(sd["roi_heads.box_predictor.cls_score.weight"].shape[1])
    return settings
