"""Datasets: procedurally drawn shapes (:mod:`.shapes`) and COCO-format datasets (:mod:`.coco`), batches
(:mod:`.loader`).

The COCO names are imported on first use, so ``import mrcnn_np.data.shapes`` stays light
(pycocotools pulls in matplotlib).
"""

_COCO_NAMES = ("CocoDataset", "DatasetError", "DatasetProblem", "DatasetWarning", "format_problems", "read_image")
_LOADER_NAMES = ("DataLoader", "hflip")
_SHAPES_NAMES = ("SHAPES", "classification_set", "draw_mask", "random_image", "shapes_coco", "shapes_dataset",
                 "write_shapes_dataset")
__all__ = [*_COCO_NAMES, *_LOADER_NAMES, *_SHAPES_NAMES]


def __getattr__(name):
    if name in _COCO_NAMES:
        from . import coco

        return getattr(coco, name)
    if name in _LOADER_NAMES:
        from . import loader

        return getattr(loader, name)
    if name in _SHAPES_NAMES:
        from . import shapes

        return getattr(shapes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
