"""Configuration of the whole model: one dataclass, every default commented with its source.

``MaskRCNNConfig()`` is torchvision's ``maskrcnn_resnet50_fpn`` as built with pretrained
weights (``models/detection/mask_rcnn.py`` and ``faster_rcnn.py``): FrozenBatchNorm2d and 3
trainable backbone layers. (Called with ``weights=None, weights_backbone=None``, torchvision
builds ordinary BatchNorm2d with all 5 layers trainable instead: ``frozen_batch_norm=False,
trainable_backbone_layers=5`` here.) :func:`resnet50_fpn` names the default;
:func:`fasterrcnn_resnet50_fpn` is torchvision's Faster R-CNN, the same settings without the mask
branch (``mask_branch=False``); :func:`maskrcnn_resnet50_fpn_v2` and :func:`fasterrcnn_resnet50_fpn_v2`
are torchvision's improved recipe (:data:`V2`: BatchNorm in the FPN and the heads, a two-conv RPN head, a
conv box head); :func:`resnet50_c4` is the paper's ResNet-C4 model (:data:`C4`, which torchvision
lacks: detectron2's R50-C4 defaults); :func:`tiny` is a small network for CPU training from scratch --
narrower and shallower, never a different algorithm (:func:`tiny_v2`, :func:`tiny_c4` its variants).
:data:`PRESETS` names them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .checks import check_bool, check_float_dtype, check_int, check_number, check_numbers, describe, is_int
from .ops.poolers import ROI_POOLERS  # ("align", "warp", "pool"), Table 2c: RoIAlign, RoIWarp, RoIPool

FPN_LEVELS = ("0", "1", "2", "3", "pool")  # the FPN's outputs, P2..P6, in order
BOX_HEADS = ("TwoMLPHead", "FastRCNNConvFCHead")  # torchvision's box heads (faster_rcnn.py), v1 and v2
ARCHITECTURES = ("fpn", "c4")  # ResNet-FPN, ResNet-C4 (Mask R-CNN paper, fig. 4)
FEATURE_MAPS = {"fpn": FPN_LEVELS, "c4": ("0",)}  # the backbone's outputs, by architecture
# the ablations of the Mask R-CNN paper's Table 2 that are settings (the first of each is the paper's and torchvision's)
MASK_LOSSES = ("sigmoid", "softmax")  # Table 2b: per-class sigmoid + BCE, or a softmax over the classes per pixel
MASK_HEADS = ("fcn", "mlp")  # Table 2e: the small FCN (MaskRCNNHeads + MaskRCNNPredictor), or an MLP

# torchvision's v2 recipe (mask_rcnn.py: maskrcnn_resnet50_fpn_v2; faster_rcnn.py: fasterrcnn_resnet50_fpn_v2):
# resnet50() with its default BatchNorm2d (not FrozenBatchNorm2d, with or without weights), BatchNorm2d in
# the FPN, RPNHead(conv_depth=2), FastRCNNConvFCHead((256, 7, 7), [256] * 4, [1024], norm_layer=BatchNorm2d)
# and MaskRCNNHeads(256, [256] * 4, 1, norm_layer=BatchNorm2d). With its weights, 3 trainable backbone layers.
V2 = dict(frozen_batch_norm=False, fpn_batch_norm=True, rpn_conv_depth=2, box_head="FastRCNNConvFCHead",
          head_batch_norm=True)


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
    # "fpn": ResNet-FPN (the paper's fig. 4, right; torchvision's); "c4": ResNet-C4 (fig. 4, left): res2-res4 as
    # the backbone, one stride-16 feature map, res5 the RoI head shared by the box and mask branches (resnet50_c4())
    architecture: str = "fpn"
    backbone: str = "resnet50"
    backbone_layers: tuple | None = None  # blocks per stage; None: the named network's
    backbone_width: int = 64
    trainable_backbone_layers: int = 3
    frozen_batch_norm: bool = True
    fpn_channels: int = 256
    # torchvision's v2 recipe (maskrcnn_resnet50_fpn_v2, after Li et al., "Benchmarking Detection Transfer
    # Learning with Vision Transformers", 2021) differs from v1 in the settings marked "v2" (all in V2)
    fpn_batch_norm: bool = False  # v2: BatchNorm2d after each FPN conv (_resnet_fpn_extractor(norm_layer=...))
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
    rpn_conv_depth: int = 1  # 3x3 conv + ReLU blocks before the RPN's 1x1 convs (RPNHead(conv_depth=)); v2: 2
    # RoI poolers (faster_rcnn.py / mask_rcnn.py: MultiScaleRoIAlign(["0", "1", "2", "3"], 7 | 14, 2))
    roi_featmap_names: tuple = ("0", "1", "2", "3")  # P2..P5; P6 ("pool") feeds only the RPN
    box_roi_output_size: int = 7
    mask_roi_output_size: int = 14
    roi_sampling_ratio: int = 2
    # box branch (faster_rcnn.py: box_* defaults; TwoMLPHead with 1024 units)
    box_head: str = "TwoMLPHead"  # fc6, fc7; v2: "FastRCNNConvFCHead", box_conv_layers' 3x3 convs then one fc
    box_conv_layers: tuple = (256, 256, 256, 256)  # FastRCNNConvFCHead's conv widths (v2); unused by TwoMLPHead
    head_batch_norm: bool = False  # v2: BatchNorm2d after each conv of FastRCNNConvFCHead and MaskRCNNHeads
    representation_size: int = 1024  # the width of TwoMLPHead's fcs, or of FastRCNNConvFCHead's one fc
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    bbox_reg_weights: tuple = (10.0, 10.0, 5.0, 5.0)
    # mask branch (mask_rcnn.py: MaskRCNNHeads (256,)*4, MaskRCNNPredictor 256). mask_branch=False is
    # Faster R-CNN (faster_rcnn.py: FasterRCNN, i.e. RoIHeads with mask_roi_pool = mask_head =
    # mask_predictor = None, ``has_mask()`` False): boxes, labels and scores only, no mask settings used
    mask_branch: bool = True
    mask_layers: tuple = (256, 256, 256, 256)
    mask_dim_reduced: int = 256
    # ablations (He et al., "Mask R-CNN", sec. 4.2, Table 2): each default is the paper's choice and torchvision's
    # (the only settings torchvision's weights and mrcnn_np.convert's round trips apply to). The mask settings are
    # checked but unused without the mask branch (mask_branch=False); roi_pooler applies to both poolers.
    mask_loss: str = "sigmoid"  # Table 2b: "sigmoid" per-class sigmoid + BCE on the true class's mask only
    #   (mask_rcnn.py: maskrcnn_loss; 30.3 mask AP); "softmax": a softmax over the K mask channels per pixel and a
    #   multinomial cross-entropy, object pixels to the true class, the rest to channel 0, background (24.8)
    class_agnostic_masks: bool = False  # Table 2b: one mask channel used for every class instead of K (29.7 vs 30.3)
    roi_pooler: str = "align"  # Table 2c, for the box *and* the mask pooler: "align" RoIAlign (MultiScaleRoIAlign;
    #   30.3), "warp" RoIWarp (Dai et al. 2016: the box rounded to the feature grid, bins bilinear; 27.2),
    #   "pool" RoIPool (Fast R-CNN: box and bins rounded, max; 26.9); "warp" and "pool" with the FPN's levels
    mask_head: str = "fcn"  # Table 2e (FPN): "fcn" MaskRCNNHeads + MaskRCNNPredictor (33.6 mask AP); "mlp" the
    #   pooled RoI flattened -> fc, fc (mask_mlp_dim, ReLU) -> fc to K (or 1) masks of 2 * mask_roi_output_size (31.5)
    mask_mlp_dim: int = 1024  # the MLP mask head's fc width (paper Table 2e: 1024); unused by "fcn"

    @property
    def feature_channels(self) -> int:
        """Channels of the maps the RPN and the poolers read: the FPN's, or C4's (16x the base width)."""
        return self.fpn_channels if self.architecture == "fpn" else self.backbone_width * 16

    def __post_init__(self):
        """Every setting checked once, here (TypeError / ValueError naming it), and normalised:
        NumPy integers become ints, lists tuples, ``dtype`` a NumPy scalar type ("float64" and
        ``np.dtype("float64")`` are ``np.float64``)."""
        _validate(self)


OP = "MaskRCNNConfig"


def _pos_int(config, name: str) -> None:
    setattr(config, name, check_int(OP, name, getattr(config, name), 1))


def _unit(config, name: str) -> None:
    check_number(OP, name, getattr(config, name), 0, 1)


def _choice(config, name: str, allowed: tuple) -> None:
    """``config.<name>`` is one of the names ``allowed``: TypeError for a non-str, ValueError for another name."""
    value = getattr(config, name)
    if not isinstance(value, str) or value not in allowed:
        raise (ValueError if isinstance(value, str) else TypeError)(
            f"{OP}: {name} must be one of {allowed}, got {describe(value)}")


def _int_tuple(name: str, value, n: int | None = None) -> tuple:
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not value:
        raise TypeError(f"{OP}: {name} must be a non-empty tuple of ints, got {describe(value)}")
    if n is not None and len(value) != n:
        raise ValueError(f"{OP}: {name} must hold {n} ints, got {len(value)}: {value!r}")
    return tuple(check_int(OP, f"{name}[{i}]", v, 1) for i, v in enumerate(value))


def _per_level(name: str, value, levels: tuple = FPN_LEVELS) -> tuple:
    """One non-empty tuple of positive numbers per feature map ``levels`` (values kept as given)."""
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not all(isinstance(v, (tuple, list)) for v in value):
        raise TypeError(f"{OP}: {name} must be a tuple of tuples of numbers, one per feature map, e.g. "
                        f"((32,), (64,), (128,), (256,), (512,)) for the FPN's levels; got {value!r}")
    if len(value) != len(levels):
        what = "FPN level (5: P2..P6)" if levels == FPN_LEVELS else "feature map (1 with architecture='c4': C4)"
        raise ValueError(f"{OP}: {name} must have one tuple per {what}, got {len(value)}")
    for i, level in enumerate(value):
        if not level:
            raise ValueError(f"{OP}: {name}[{i}] is empty")
        check_numbers(OP, f"{name}[{i}]", level, None, 0, lo_open=True)
    return tuple(tuple(level) for level in value)


def _top_n(config, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, dict):
        raise TypeError(f"{OP}: {name} must be a dict {{'training': n, 'testing': n}}, got {describe(value)}")
    if set(value) != {"training", "testing"}:
        raise ValueError(f"{OP}: {name} must have the keys 'training' and 'testing', got {sorted(map(str, value))}")
    setattr(config, name, {k: check_int(OP, f"{name}[{k!r}]", value[k], 1) for k in ("training", "testing")})


def _validate(c: MaskRCNNConfig) -> None:
    if not is_int(c.num_classes) or c.num_classes < 2:
        raise (ValueError if is_int(c.num_classes) else TypeError)(
            f"{OP}: num_classes counts the background too: expected an int >= 2, got {describe(c.num_classes)}")
    c.num_classes = int(c.num_classes)
    c.dtype = check_float_dtype(OP, "dtype", c.dtype)
    for name in ("min_size", "max_size", "backbone_width", "fpn_channels", "rpn_batch_size_per_image",
                 "box_roi_output_size", "mask_roi_output_size", "representation_size", "box_detections_per_img",
                 "box_batch_size_per_image", "mask_dim_reduced"):
        _pos_int(c, name)
    c.image_mean = check_numbers(OP, "image_mean", c.image_mean, 3)
    c.image_std = check_numbers(OP, "image_std", c.image_std, 3, 0, lo_open=True)
    if not isinstance(c.backbone, str):
        raise TypeError(f"{OP}: backbone must be a name such as 'resnet50', got {describe(c.backbone)}")
    from .model.backbone import RESNET_LAYERS  # the names live with the networks

    if c.backbone not in RESNET_LAYERS:
        raise ValueError(f"{OP}: unknown backbone {c.backbone!r}; expected one of {sorted(RESNET_LAYERS)} (with "
                         f"backbone_layers= for fewer blocks per stage)")
    if c.backbone_layers is not None:
        c.backbone_layers = _int_tuple("backbone_layers", c.backbone_layers, 4)
    c.trainable_backbone_layers = check_int(OP, "trainable_backbone_layers", c.trainable_backbone_layers, 0, 5)
    check_bool(OP, "frozen_batch_norm", c.frozen_batch_norm)
    c.mask_branch = check_bool(OP, "mask_branch", c.mask_branch)
    c.fpn_batch_norm = check_bool(OP, "fpn_batch_norm", c.fpn_batch_norm)
    c.head_batch_norm = check_bool(OP, "head_batch_norm", c.head_batch_norm)
    c.rpn_conv_depth = check_int(OP, "rpn_conv_depth", c.rpn_conv_depth, 1)
    if not isinstance(c.box_head, str):
        raise TypeError(f"{OP}: box_head must be a name, one of {BOX_HEADS}, got {describe(c.box_head)}")
    if c.box_head not in BOX_HEADS:
        raise ValueError(f"{OP}: unknown box_head {c.box_head!r}; expected one of {BOX_HEADS}")
    c.box_conv_layers = _int_tuple("box_conv_layers", c.box_conv_layers)
    if not isinstance(c.architecture, str) or c.architecture not in ARCHITECTURES:
        raise (ValueError if isinstance(c.architecture, str) else TypeError)(
            f"{OP}: architecture must be one of {ARCHITECTURES}, got {describe(c.architecture)}")
    levels = FEATURE_MAPS[c.architecture]
    c.anchor_sizes = _per_level("anchor_sizes", c.anchor_sizes, levels)
    c.aspect_ratios = _per_level("aspect_ratios", c.aspect_ratios, levels)
    per_location = {len(s) * len(r) for s, r in zip(c.anchor_sizes, c.aspect_ratios, strict=True)}
    if len(per_location) > 1:
        raise ValueError(f"{OP}: anchor_sizes and aspect_ratios give {sorted(per_location)} anchors per location on "
                         f"different levels; the RPN head is shared by all levels, so they must be equal")
    _top_n(c, "rpn_pre_nms_top_n")
    _top_n(c, "rpn_post_nms_top_n")
    for name in ("rpn_nms_thresh", "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_positive_fraction",
                 "box_nms_thresh", "box_fg_iou_thresh", "box_bg_iou_thresh", "box_positive_fraction"):
        _unit(c, name)
    for stage in ("rpn", "box"):
        fg, bg = getattr(c, f"{stage}_fg_iou_thresh"), getattr(c, f"{stage}_bg_iou_thresh")
        if bg > fg:
            raise ValueError(f"{OP}: {stage}_bg_iou_thresh {bg} must be <= {stage}_fg_iou_thresh {fg}")
    check_number(OP, "rpn_score_thresh", c.rpn_score_thresh)
    check_number(OP, "box_score_thresh", c.box_score_thresh)
    names = tuple(c.roi_featmap_names) if isinstance(c.roi_featmap_names, (list, tuple)) else None
    if names is None or not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{OP}: roi_featmap_names must be a non-empty tuple of FPN level names, e.g. ('0', '1', "
                        f"'2', '3'), got {c.roi_featmap_names!r}")
    if c.architecture == "c4":
        if names != ("0",):
            raise ValueError(f"{OP}: with architecture='c4' the RoIs are pooled from the one feature map: "
                             f"roi_featmap_names must be ('0',), got {names!r}")
    else:
        first = FPN_LEVELS.index(names[0]) if names[0] in FPN_LEVELS else -1
        if first < 0 or names != FPN_LEVELS[first : first + len(names)]:
            raise ValueError(f"{OP}: roi_featmap_names must be consecutive FPN levels in order, from {FPN_LEVELS}; "
                             f"got {names!r}")
    c.roi_featmap_names = names
    c.roi_sampling_ratio = check_int(OP, "roi_sampling_ratio", c.roi_sampling_ratio)
    c.bbox_reg_weights = check_numbers(OP, "bbox_reg_weights", c.bbox_reg_weights, 4, 0, lo_open=True)
    c.mask_layers = _int_tuple("mask_layers", c.mask_layers)
    _choice(c, "mask_loss", MASK_LOSSES)
    c.class_agnostic_masks = check_bool(OP, "class_agnostic_masks", c.class_agnostic_masks)
    _choice(c, "roi_pooler", ROI_POOLERS)
    _choice(c, "mask_head", MASK_HEADS)
    _pos_int(c, "mask_mlp_dim")
    if c.mask_loss == "softmax" and c.class_agnostic_masks:
        raise ValueError(f"{OP}: mask_loss='softmax' compares the K class channels of each pixel; with "
                         f"class_agnostic_masks=True there is one channel: use mask_loss='sigmoid' with it")
    if c.mask_head == "mlp" and c.architecture == "c4":
        raise ValueError(f"{OP}: mask_head='mlp' replaces the FPN's mask head (paper Table 2e); with "
                         f"architecture='c4' the mask head is res5, shared with the box head: use mask_head='fcn'")


def as_config(config, op: str):
    """``config`` if it is a :class:`MaskRCNNConfig`; otherwise a TypeError that says how to make one."""
    if isinstance(config, MaskRCNNConfig):
        return config
    if config is MaskRCNNConfig:
        hint = ": call it, MaskRCNNConfig(), or use mrcnn_np.config.tiny()"
    elif isinstance(config, dict):
        hint = ": for a dict of settings use mrcnn_np.config.config_from_dict(d)"
    else:
        hint = " such as mrcnn_np.config.tiny() or MaskRCNNConfig()"
    raise TypeError(f"{op}: config must be a MaskRCNNConfig, got {describe(config)}{hint}")


def resnet50_fpn(num_classes: int = 91, **overrides) -> MaskRCNNConfig:
    """torchvision's ``maskrcnn_resnet50_fpn`` defaults."""
    return MaskRCNNConfig(num_classes=num_classes, **overrides)


def fasterrcnn_resnet50_fpn(num_classes: int = 91, **overrides) -> MaskRCNNConfig:
    """torchvision's ``fasterrcnn_resnet50_fpn`` defaults: those of ``maskrcnn_resnet50_fpn`` (both
    build ``resnet50`` + ``_resnet_fpn_extractor`` and pass the same keywords on to ``FasterRCNN``,
    which ``MaskRCNN`` subclasses) without the mask branch."""
    return MaskRCNNConfig(**{"num_classes": num_classes, "mask_branch": False, **overrides})


def maskrcnn_resnet50_fpn_v2(num_classes: int = 91, **overrides) -> MaskRCNNConfig:
    """torchvision's ``maskrcnn_resnet50_fpn_v2`` as built with its weights (3 trainable backbone
    layers; ``trainable_backbone_layers=5`` is ``weights=None, weights_backbone=None``): the v1
    defaults with :data:`V2`'s settings."""
    return MaskRCNNConfig(**{"num_classes": num_classes, **V2, **overrides})


def fasterrcnn_resnet50_fpn_v2(num_classes: int = 91, **overrides) -> MaskRCNNConfig:
    """torchvision's ``fasterrcnn_resnet50_fpn_v2``: :func:`maskrcnn_resnet50_fpn_v2` without the mask
    branch (the same backbone, RPN head and box head)."""
    return MaskRCNNConfig(**{"num_classes": num_classes, **V2, "mask_branch": False, **overrides})


# The paper's ResNet-C4 Mask R-CNN (sec. 3, "Network Architecture", fig. 4 left) with the defaults of
# detectron2's R50-C4 recipe (configs/Base-RCNN-C4.yaml and config/defaults.py) where torchvision has none:
C4 = dict(
    architecture="c4",
    # one feature map, 15 anchors per location: "5 scales and 3 aspect ratios" (paper sec. 3.1;
    # detectron2 ANCHOR_GENERATOR.SIZES [[32, 64, 128, 256, 512]], ASPECT_RATIOS [[0.5, 1.0, 2.0]])
    anchor_sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),),
    # detectron2 RPN.PRE_NMS_TOPK_TRAIN 12000 / _TEST 6000, POST_NMS_TOPK_TRAIN 2000 / _TEST 1000 (per image;
    # torchvision counts per level, and C4 has one level)
    rpn_pre_nms_top_n={"training": 12000, "testing": 6000}, rpn_post_nms_top_n={"training": 2000, "testing": 1000},
    # RoIAlign 14x14 on C4 (detectron2 ROI_BOX_HEAD.POOLER_RESOLUTION 14, ROI_MASK_HEAD.POOLER_RESOLUTION 14,
    # POOLER_SAMPLING_RATIO 0: adaptive); res5's stride 2 makes it 7x7, the mask deconvolution 14x14 again
    roi_featmap_names=("0",), box_roi_output_size=14, mask_roi_output_size=14, roi_sampling_ratio=0,
    # "N is 64 for the C4 backbone ... and 512 for FPN" (paper sec. 3.1, Training); 1:3 positives to negatives
    box_batch_size_per_image=64,
)


def resnet50_c4(num_classes: int = 91, **overrides) -> MaskRCNNConfig:
    """Mask R-CNN with the ResNet-C4 backbone (:data:`C4`): res2-res4 as the backbone (stride 16), the
    RPN on C4 with 15 anchors per location, RoIAlign 14x14 on C4, res5 (then average pooling) as the box
    head and, shared, as the mask head, whose 7x7 output a 2x2 deconvolution (256) and a 1x1 conv turn
    into 14x14 masks; 64 sampled RoIs per image. FrozenBatchNorm2d and 3 trainable stages (layer2, layer3
    and res5) as for the FPN model. ``mask_branch=False`` is the C4 Faster R-CNN."""
    return MaskRCNNConfig(**{"num_classes": num_classes, **C4, **overrides})


def tiny(num_classes: int = 4, **overrides) -> MaskRCNNConfig:
    """A small Mask R-CNN for CPU experiments: ResNet with one bottleneck per stage and base width
    16, 64 FPN channels, smaller heads and images, fewer proposals and samples. Trainable
    BatchNorm2d everywhere, because it trains from scratch (frozen statistics only make sense
    for a pretrained backbone). ``tiny(mask_branch=False)`` is the small Faster R-CNN,
    ``tiny(**V2, box_conv_layers=(64,) * 4)`` the small v2."""
    settings = dict(
        num_classes=num_classes, min_size=256, max_size=384, backbone_layers=(1, 1, 1, 1), backbone_width=16,
        trainable_backbone_layers=5, frozen_batch_norm=False, fpn_channels=64, representation_size=256,
        mask_layers=(64, 64, 64, 64), mask_dim_reduced=64,
        rpn_pre_nms_top_n={"training": 600, "testing": 300}, rpn_post_nms_top_n={"training": 300, "testing": 100},
        rpn_batch_size_per_image=128, box_batch_size_per_image=128, box_detections_per_img=50,
    )
    return MaskRCNNConfig(**{**settings, **overrides})


def tiny_v2(num_classes: int = 4, **overrides) -> MaskRCNNConfig:
    """:func:`tiny` with torchvision's v2 recipe (:data:`V2`): BatchNorm in the FPN and the heads, two
    RPN convs, and a conv box head of four 64-channel convs and one fc."""
    return tiny(num_classes, **{**V2, "box_conv_layers": (64, 64, 64, 64), **overrides})


def tiny_c4(num_classes: int = 4, **overrides) -> MaskRCNNConfig:
    """:func:`tiny` with the ResNet-C4 architecture (:data:`C4`: one feature map, 15 anchors per
    location, res5 as the shared RoI head), with tiny's proposal counts and 64 sampled RoIs."""
    c4 = {k: v for k, v in C4.items() if not k.startswith("rpn_")}  # tiny's proposal counts
    return tiny(num_classes, **{**c4, **overrides})


# every named configuration, by the name torchvision gives the model (``mrcnn-np train --config``,
# ``mrcnn-np verify --model``); each takes ``num_classes`` and keyword overrides
PRESETS = {
    "tiny": tiny,
    "tiny_v2": tiny_v2,
    "maskrcnn_resnet50_fpn": resnet50_fpn,
    "fasterrcnn_resnet50_fpn": fasterrcnn_resnet50_fpn,
    "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2,
    "fasterrcnn_resnet50_fpn_v2": fasterrcnn_resnet50_fpn_v2,
    "tiny_c4": tiny_c4,
    "maskrcnn_resnet50_c4": resnet50_c4,  # no torchvision model: detectron2's R50-C4 recipe
}


def preset(name: str, **settings) -> MaskRCNNConfig:
    """The configuration :data:`PRESETS` names ``name`` (a ValueError listing them for an unknown name)."""
    if name not in PRESETS:
        raise ValueError(f"unknown configuration {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name](**settings)


# --- to and from JSON ----------------------------------------------------------------------
def config_to_dict(config: MaskRCNNConfig) -> dict:
    """A JSON-serialisable dict of ``config`` (``dtype`` by name, tuples as lists)."""
    as_config(config, "config_to_dict")
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = np.dtype(value).name if f.name == "dtype" else _jsonable(value)
    return out


def config_from_dict(d: dict) -> MaskRCNNConfig:
    """Inverse of :func:`config_to_dict`; unknown keys are an error (a typo must not pass silently)."""
    if not isinstance(d, dict):
        raise TypeError(f"config_from_dict: expected a dict of settings (as config_to_dict writes), got {describe(d)}")
    known = {f.name for f in fields(MaskRCNNConfig)}
    unknown = sorted(set(d) - known, key=repr)
    if unknown:
        raise ValueError(f"config_from_dict: unknown settings {unknown}")
    values = {}
    for name, value in d.items():
        values[name] = _tuples(value) if isinstance(value, list) else value  # dtype by name: checked by the config
    return MaskRCNNConfig(**values)


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
