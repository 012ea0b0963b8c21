"""Twins of our models in torchvision: the same architecture and weights, for comparisons.

:func:`torchvision_model` builds torchvision's ``MaskRCNN`` of exactly the architecture of our
``MaskRCNN(config)`` (the C4 model assembled from torchvision's parts: it has none);
:func:`twin_pair` gives both with the same (calibrated) random weights;
:func:`to_torch` and :func:`targets_to_torch` turn our inputs into torchvision's. Needs the
``reference`` extra.
"""

from __future__ import annotations

import numpy as np

from ..backend import to_numpy
from ..model.transform import as_chw_float
from . import require_torch


def sample_image(name: str = "grace_hopper.jpg") -> np.ndarray:
    """A photograph matplotlib ships, as (H, W, 3) float64 in [0, 1]."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg

    img = mpimg.imread(cbook.get_sample_data(name, asfileobj=False))[..., :3].astype(np.float64)
    return img / 255 if img.max() > 1 else img


def calibrate_norms(model, run, seed: int = 1) -> None:
    """Set each (frozen) batch norm's statistics to its input's per-channel mean and variance in
    one forward pass ``run()``, then perturb them and the affine terms randomly. A norm that
    ``run()`` does not reach, or reaches with an empty input, is left as it is."""
    torch = require_torch()
    from torchvision.ops.misc import FrozenBatchNorm2d

    g = torch.Generator().manual_seed(seed)
    handles = {}

    def set_stats(module, inputs):
        x = inputs[0].detach()
        C = x.shape[1]
        if x.numel() == 0:  # e.g. a mask head without detections: wait for a non-empty call
            return
        with torch.no_grad():
            module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            module.running_var.copy_(x.var(dim=(0, 2, 3)) * (torch.rand(C, generator=g, dtype=x.dtype) + 0.5))
            module.weight.copy_(torch.rand(C, generator=g, dtype=x.dtype) + 0.5)
            module.bias.copy_(torch.randn(C, generator=g, dtype=x.dtype) * 0.1)
        handles.pop(module).remove()

    for m in model.modules():
        if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
            handles[m] = m.register_forward_pre_hook(set_stats)
    with torch.no_grad():
        run()
    for h in handles.values():
        h.remove()


def to_torch(images, dtype=np.float64) -> list:
    """Images as our models take them ((H, W, 3) or (3, H, W), float in [0, 1] or uint8) ->
    torchvision's (3, H, W) tensors in [0, 1] of ``dtype``."""
    torch = require_torch()
    dtype = np.dtype(dtype).type
    return [torch.from_numpy(np.ascontiguousarray(as_chw_float(to_numpy(im), dtype))) for im in images]


def targets_to_torch(targets) -> list:
    """Training targets ``{"boxes", "labels", "masks", ...}`` -> the same dicts of tensors
    (entries that are not arrays, such as ``image_id``, are left out)."""
    torch = require_torch()
    return [{k: torch.from_numpy(np.asarray(to_numpy(v))) for k, v in t.items() if hasattr(v, "shape")}
            for t in targets]


def _torchvision_resnet(config):
    """torchvision's ResNet (Bottleneck) body with ``config``'s blocks per stage, base width and norm layer."""
    torch = require_torch()
    from torchvision.models import resnet
    from torchvision.ops.misc import FrozenBatchNorm2d

    norm = FrozenBatchNorm2d if config.frozen_batch_norm else torch.nn.BatchNorm2d
    if config.backbone_layers is None:
        body = getattr(resnet, config.backbone)(weights=None, norm_layer=norm)
    else:
        body = resnet.ResNet(resnet.Bottleneck, list(config.backbone_layers), norm_layer=norm)
    w = config.backbone_width
    if w != 64:  # torchvision hard-codes 64: rebuild the stem and the four stages (avgpool, fc: unused)
        body.inplanes = w
        body.conv1 = torch.nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        body.bn1 = norm(w)
        for i in range(4):
            blocks = len(getattr(body, f"layer{i + 1}"))
            setattr(body, f"layer{i + 1}", body._make_layer(resnet.Bottleneck, w * 2**i, blocks, 1 if i == 0 else 2))
        for m in body.modules():  # ResNet's init for the new convolutions
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return body


def torchvision_model(config, seed: int = 0):
    """torchvision's ``MaskRCNN`` with exactly the architecture of our ``MaskRCNN(config)``: the same
    state-dict keys and shapes, the same parameters frozen (``_resnet_fpn_extractor``), every
    transform / RPN / pooler / RoI-head setting passed through; torchvision's random initialisation after
    ``torch.manual_seed(seed)``, in the config's dtype. With ``config.mask_branch=False`` it is
    torchvision's ``FasterRCNN`` (no mask head).

    Modules are built in the order torchvision's own constructors build them, so for the default
    config the weights are those of ``MaskRCNN(resnet_fpn_backbone("resnet50", weights=None), ...)``, and
    for :func:`~mrcnn_np.config.maskrcnn_resnet50_fpn_v2` with ``trainable_backbone_layers=5`` those of
    ``maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)``.
    """
    torch = require_torch()
    from torchvision.models.detection import FasterRCNN as TVFasterRCNN
    from torchvision.models.detection import MaskRCNN as TVMaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, RPNHead, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

    c = config
    torch.manual_seed(seed)
    if c.architecture == "c4":
        return _torchvision_c4_model(c)
    fpn_norm = torch.nn.BatchNorm2d if c.fpn_batch_norm else None
    head_norm = torch.nn.BatchNorm2d if c.head_batch_norm else None
    backbone = _resnet_fpn_extractor(_torchvision_resnet(c), c.trainable_backbone_layers, norm_layer=fpn_norm)
    if c.fpn_channels != backbone.out_channels:  # the extractor always builds a 256-channel FPN
        in_channels = [c.backbone_width * 4 * 2**i for i in range(4)]  # C2..C5
        backbone.fpn = FeaturePyramidNetwork(in_channels, c.fpn_channels, extra_blocks=LastLevelMaxPool(),
                                             norm_layer=fpn_norm)
        backbone.out_channels = c.fpn_channels
    anchors = AnchorGenerator(c.anchor_sizes, c.aspect_ratios)
    rpn_head = RPNHead(c.fpn_channels, anchors.num_anchors_per_location()[0], conv_depth=c.rpn_conv_depth)
    if c.box_head == "FastRCNNConvFCHead":  # v2: built by the model function, before MaskRCNN's defaults
        box_head = FastRCNNConvFCHead((c.fpn_channels, c.box_roi_output_size, c.box_roi_output_size),
                                      list(c.box_conv_layers), [c.representation_size], norm_layer=head_norm)
    mask_head = MaskRCNNHeads(c.fpn_channels, list(c.mask_layers), 1, norm_layer=head_norm) if c.mask_branch else None
    # then the heads in the order MaskRCNN and FasterRCNN create their defaults: the same random draws
    mask = {}
    if c.mask_branch:
        mask = dict(mask_head=mask_head,
                    mask_predictor=MaskRCNNPredictor(c.mask_layers[-1], c.mask_dim_reduced, c.num_classes),
                    mask_roi_pool=MultiScaleRoIAlign(list(c.roi_featmap_names), c.mask_roi_output_size,
                                                     c.roi_sampling_ratio))
    if c.box_head == "TwoMLPHead":
        box_head = TwoMLPHead(c.fpn_channels * c.box_roi_output_size**2, c.representation_size)
    box_predictor = FastRCNNPredictor(c.representation_size, c.num_classes)
    model = (TVMaskRCNN if c.mask_branch else TVFasterRCNN)(
        backbone, None, **_settings(c), rpn_anchor_generator=anchors, rpn_head=rpn_head, box_head=box_head,
        box_predictor=box_predictor,
        box_roi_pool=MultiScaleRoIAlign(list(c.roi_featmap_names), c.box_roi_output_size, c.roi_sampling_ratio),
        **mask,
    )
    return model.to(torch.float64 if np.dtype(c.dtype) == np.float64 else torch.float32)


def _torchvision_c4_model(c):
    """torchvision's ``MaskRCNN`` (or ``FasterRCNN``) assembled into the ResNet-C4 model of ``config`` ``c``
    (torchvision has none): its ResNet up to ``layer3`` as the backbone (``IntermediateLayerGetter``,
    frozen by ``_resnet_fpn_extractor``'s rule), ``AnchorGenerator`` with one level, ``RPNHead`` on C4, one
    ``MultiScaleRoIAlign(["0"], 14, 0)`` for boxes and masks, ``layer4`` (+ mean) as the box head and, the
    same module, as the mask head, ``FastRCNNPredictor`` and ``MaskRCNNPredictor`` on its 32w channels."""
    torch = require_torch()
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.detection import FasterRCNN as TVFasterRCNN
    from torchvision.models.detection import MaskRCNN as TVMaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, RPNHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    from .torch_c4 import C4Backbone, Res5BoxHead

    resnet = _torchvision_resnet(c)
    body = IntermediateLayerGetter(resnet, {"layer3": "0"})
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][: c.trainable_backbone_layers]
    if c.trainable_backbone_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in body.named_parameters():  # _resnet_fpn_extractor's rule
        if all(not name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)
    backbone = C4Backbone(body, c.backbone_width * 16)
    box_head = Res5BoxHead(resnet.layer4)
    width = c.backbone_width * 32
    mask = {}
    if c.mask_branch:
        mask = dict(mask_roi_pool=MultiScaleRoIAlign(["0"], c.mask_roi_output_size, c.roi_sampling_ratio),
                    mask_head=resnet.layer4,
                    mask_predictor=MaskRCNNPredictor(width, c.mask_dim_reduced, c.num_classes))
    anchors = AnchorGenerator(c.anchor_sizes, c.aspect_ratios)
    model = (TVMaskRCNN if c.mask_branch else TVFasterRCNN)(
        backbone, None, **_settings(c), rpn_anchor_generator=anchors,
        rpn_head=RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=c.rpn_conv_depth),
        box_roi_pool=MultiScaleRoIAlign(["0"], c.box_roi_output_size, c.roi_sampling_ratio), box_head=box_head,
        box_predictor=FastRCNNPredictor(width, c.num_classes), **mask)
    return model.to(torch.float64 if np.dtype(c.dtype) == np.float64 else torch.float32)


def _settings(c) -> dict:
    """The keyword settings of torchvision's ``FasterRCNN`` / ``MaskRCNN`` that ``config`` ``c`` sets."""
    return dict(
        min_size=c.min_size, max_size=c.max_size, image_mean=list(c.image_mean), image_std=list(c.image_std),
        rpn_pre_nms_top_n_train=c.rpn_pre_nms_top_n["training"], rpn_pre_nms_top_n_test=c.rpn_pre_nms_top_n["testing"],
        rpn_post_nms_top_n_train=c.rpn_post_nms_top_n["training"],
        rpn_post_nms_top_n_test=c.rpn_post_nms_top_n["testing"], rpn_nms_thresh=c.rpn_nms_thresh,
        rpn_fg_iou_thresh=c.rpn_fg_iou_thresh, rpn_bg_iou_thresh=c.rpn_bg_iou_thresh,
        rpn_batch_size_per_image=c.rpn_batch_size_per_image, rpn_positive_fraction=c.rpn_positive_fraction,
        rpn_score_thresh=c.rpn_score_thresh, box_score_thresh=c.box_score_thresh, box_nms_thresh=c.box_nms_thresh,
        box_detections_per_img=c.box_detections_per_img, box_fg_iou_thresh=c.box_fg_iou_thresh,
        box_bg_iou_thresh=c.box_bg_iou_thresh, box_batch_size_per_image=c.box_batch_size_per_image,
        box_positive_fraction=c.box_positive_fraction, bbox_reg_weights=tuple(c.bbox_reg_weights),
    )


def twin_pair(config, seed: int = 0, image=None):
    """(:func:`torchvision_model`, our ``MaskRCNN(config)``) with identical weights, in eval mode.
    The norm statistics are calibrated on ``image`` (default :func:`sample_image`) with
    :func:`calibrate_norms` and then copied into ours with the other weights."""
    from ..convert import load_torchvision_state_dict
    from ..model.mask_rcnn import MaskRCNN

    tv = torchvision_model(config, seed).eval()
    x = to_torch([sample_image() if image is None else image], config.dtype)
    # the whole model runs, so the norms in the heads (torchvision's v2) are calibrated too
    calibrate_norms(tv, lambda: tv(x), seed + 1)
    ours = MaskRCNN(config)
    load_torchvision_state_dict(ours, tv)
    return tv, ours.eval()


def build_pair(num_classes: int = 91, dtype=np.float64, seed: int = 0, min_size: int = 800, max_size: int = 1333,
               image=None):
    """(torchvision model, our model) of the default ResNet-50-FPN recipe with the same random
    weights, in eval mode (:func:`twin_pair` of ``MaskRCNNConfig`` with these settings)."""
    from ..config import MaskRCNNConfig

    return twin_pair(MaskRCNNConfig(num_classes=num_classes, dtype=dtype, min_size=min_size, max_size=max_size),
                     seed, image)
