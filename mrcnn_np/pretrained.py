"""The small trained shapes model shipped with the package, so the chapters can show real
predictions without training first.

    model = shapes_model()            # MaskRCNN(config.tiny(), 128 x 128 shapes), eval mode
    model.classes                     # ["background", "square", "circle", "triangle"]

The file ``mrcnn_np/weights/shapes_tiny.safetensors`` is what ``mrcnn-np demo`` trained with its
default settings from a fresh clone at 98c1431 (2100 iterations, an FPN of 32 channels, a mask head of
16; held-out AP@0.5 0.977 boxes, 0.971 masks), stored in float16 to keep the repository small (the model
computes in float32; :func:`shapes_model` casts on loading; the float16 copy scores the same AP@0.5 on
the demo's 100 held-out images, and AP@[.5:.95] 0.788 / 0.796 against the float32 model's 0.788 /
0.797). To reproduce it::

    mrcnn-np demo --out runs/demo
    python -m mrcnn_np.pretrained runs/demo/model.safetensors     # writes the float16 copy

Its held-out AP numbers are in the file's metadata (``metrics``), as the demo measured them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .convert import CONFIG_KEY, load_model, load_safetensors, read_metadata, save_safetensors

SHAPES_WEIGHTS = Path(__file__).parent / "weights" / "shapes_tiny.safetensors"


def shapes_model(path=SHAPES_WEIGHTS):
    """The trained shapes Mask R-CNN in eval mode, with ``.classes`` (label -> name) and
    ``.metrics`` (the demo's held-out COCO numbers) attached."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} is missing; recreate it with: mrcnn-np demo && "
                                "python -m mrcnn_np.pretrained runs/demo/model.safetensors")
    model = load_model(path)
    metadata = read_metadata(path)
    model.classes = json.loads(metadata.get("classes", "null"))
    model.metrics = json.loads(metadata.get("metrics", "null"))
    return model


def export_half(source, target=SHAPES_WEIGHTS, metrics_file=None) -> Path:
    """Copy a model file written by ``mrcnn-np demo``/``train`` with its floating-point arrays in
    float16 (integers as they are), keeping its metadata; add the demo's ``metrics.json``
    (default: next to ``source``) when there is one."""
    arrays = {k: v.astype(np.float16) if v.dtype.kind == "f" else v for k, v in load_safetensors(source).items()}
    metadata = read_metadata(source)
    if CONFIG_KEY not in metadata:
        raise ValueError(f"{source}: no model configuration; expected a file written by mrcnn-np demo or train")
    metrics_file = Path(source).parent / "metrics.json" if metrics_file is None else Path(metrics_file)
    if metrics_file.is_file():
        metadata["metrics"] = json.dumps(json.loads(metrics_file.read_text())["metrics"])
    save_safetensors(arrays, target, metadata)
    return Path(target)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m mrcnn_np.pretrained runs/demo/model.safetensors")
    print(f"wrote {export_half(sys.argv[1])}")
