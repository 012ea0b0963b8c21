"""Configuration of the whole model: one dataclass, every default commented with its source.

``MaskRCNNConfig()`` is torchvision's ``maskrcnn_resnet50_fpn`` as built with pretrained
weights (``models/detection/mask_rcnn.py`` and ``faster_rcnn.py``): FrozenBatchNorm2d and 3
trainable backbone layers. (Called with ``weights=None, weights_backbone=None``, torchvision
builds ordinary BatchNorm2d with all 5 layers trainable instead: ``frozen_batch_norm=False,
trainable_backbone_layers=5`` here.) :func:`resnet50_fpn` names the default; :func:`tiny`
is a small network for CPU training from scratch -- narrower and shallower, never a different
algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np


@dataclass
class MaskRCNNConfig:
    num_classes: int = 91  # COCO's 80 classes + background, in torchvision's 91-index layout
    dtype: type = np.float32
    # transform (faster_rcnn.py: min_size, max_size, image_mean, image_std)
    min_size: int = 800
    max_size: int = 1333
    image_mean: tuple = (0.485, 0.456, 0.406)  # ImageNet statistics
    image_std: tuple = (0.229, 0.224, 0.225)
    # backbone (mask_rcnn.py: resnet50 + FPN, trainable_backbone_layers=3, FrozenBatchNorm2d)
    backbone: str = "resnet50"
    backbone_layers: tuple | None = None  # blocks per stage; None: the named network's
    backbone_width: int = 64
    trainable_backbone_layers: int = 3
    frozen_batch_norm: bool = True
    fpn_channels: int = 256
    # anchors (faster_rcnn.py: _default_anchorgen)
    anchor_sizes: tuple = ((32,), (64,), (128,), (256,), (512,))
    aspect_ratios: tuple = ((0.5, 1.0, 2.0),) * 5
    # RPN (faster_rcnn.py: rpn_* defaults)
    rpn_pre_nms_top_n: dict = field(default_factory=lambda: {"training": 2000, "testing": 1000})
    rpn_post_nms_top_n: dict = field(default_factory=lambda: {"training": 2000, "testing": 1000})
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_score_thresh: float = 0.0
    # RoI poolers (faster_rcnn.py / mask_rcnn.py: MultiScaleRoIAlign(["0", "1", "2", "3"], 7 | 14, 2))
    roi_featmap_names: tuple = ("0", "1", "2", "3")  # P2..P5; P6 ("pool") feeds only the RPN
    box_roi_output_size: int = 7
    mask_roi_output_size: int = 14
    roi_sampling_ratio: int = 2
    # box branch (faster_rcnn.py: box_* defaults; TwoMLPHead with 1024 units)
    representation_size: int = 1024
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    bbox_reg_weights: tuple = (10.0, 10.0, 5.0, 5.0)
    # mask branch (mask_rcnn.py: MaskRCNNHeads (256,)*4, MaskRCNNPredictor 256)
    mask_layers: tuple = (256, 256, 256, 256)
    mask_dim_reduced: int = 256


def resnet50_fpn(num_classes: int = 91, **overrides) -> MaskRCNNConfig:
    """torchvision's ``maskrcnn_resnet50_fpn`` defaults."""
    return MaskRCNNConfig(num_classes=num_classes, **overrides)


def tiny(num_classes: int = 4, **overrides) -> MaskRCNNConfig:
    """A small Mask R-CNN for CPU experiments: ResNet with one bottleneck per stage and base width
    16, 64 FPN channels, smaller heads and images, fewer proposals and samples. Trainable
    BatchNorm2d everywhere, because it trains from scratch (frozen statistics only make sense
    for a pretrained backbone)."""
    settings = dict(
        num_classes=num_classes, min_size=256, max_size=384, backbone_layers=(1, 1, 1, 1), backbone_width=16,
        trainable_backbone_layers=5, frozen_batch_norm=False, fpn_channels=64, representation_size=256,
        mask_layers=(64, 64, 64, 64), mask_dim_reduced=64,
        rpn_pre_nms_top_n={"training": 600, "testing": 300}, rpn_post_nms_top_n={"training": 300, "testing": 100},
        rpn_batch_size_per_image=128, box_batch_size_per_image=128, box_detections_per_img=50,
    )
    return MaskRCNNConfig(**{**settings, **overrides})


# --- to and from JSON ----------------------------------------------------------------------
def config_to_dict(config: MaskRCNNConfig) -> dict:
    """A JSON-serialisable dict of ``config`` (``dtype`` by name, tuples as lists)."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = np.dtype(value).name if f.name == "dtype" else _jsonable(value)
    return out


def config_from_dict(d: dict) -> MaskRCNNConfig:
    """Inverse of :func:`config_to_dict`; unknown keys are an error (a typo must not pass silently)."""
    known = {f.name for f in fields(MaskRCNNConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"config_from_dict: unknown settings {unknown}")
    values = {}
    for name, value in d.items():
        if name == "dtype":
            value = np.dtype(value).type
        elif isinstance(value, list):
            value = _tuples(value)
        values[name] = value
    return MaskRCNNConfig(**values)


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
