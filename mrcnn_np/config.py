"""Configuration of the whole model: one dataclass, every default commented with its source.

``MaskRCNNConfig()`` is torchvision's ``maskrcnn_resnet50_fpn`` (``models/detection/
mask_rcnn.py`` and ``faster_rcnn.py``); :func:`resnet50_fpn` names it. Smaller presets for
CPU training are added with the training work (they change widths and depths, never the
algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
