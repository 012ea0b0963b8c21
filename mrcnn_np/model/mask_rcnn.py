"""Mask R-CNN: transform -> backbone + FPN -> RPN -> RoI heads -> back to the image.

The ResNet-C4 model (the paper's fig. 4, left) is the same class with ``config.architecture="c4"``
(:func:`mrcnn_np.config.resnet50_c4`): one stride-16 feature map ``{"0": C4}``, res5 as the RoI head.

Faster R-CNN is the same class with ``config.mask_branch=False``
(:func:`mrcnn_np.config.fasterrcnn_resnet50_fpn`): no mask head, no ``masks`` in the outputs,
no ``loss_mask``, optional ``masks`` in the targets; its state dict is torchvision's
``FasterRCNN``'s.

    model = MaskRCNN(config); model.load_state_dict(sd); model.eval()
    outputs = model([image, ...])          # per image: boxes (D, 4), labels (D,), scores (D,),
                                           # masks (D, 1, H, W) probabilities in [0, 1]
    model.train(); losses = model(images, targets)   # loss_objectness, loss_rpn_box_reg,
                                                     # loss_classifier, loss_box_reg, loss_mask

Images are (H, W, 3) or (3, H, W) arrays, float in [0, 1] or uint8 (see
:func:`mrcnn_np.model.transform.as_chw_float`). Targets: ``{"boxes": (G, 4) xyxy,
"labels": (G,) int64 in 1..K-1, "masks": (G, H, W) uint8}`` in the image's pixels.

Inference is :meth:`MaskRCNN.predict`, training :meth:`MaskRCNN.loss`; calling the model
picks one by its mode, like torchvision's. Parameter names are torchvision's
(``backbone.body...``, ``rpn.head...``, ``roi_heads.box_head.fc6.weight``, ...).

**Devices.** ``model.to("cuda")`` moves the weights to the GPU (CuPy arrays), ``model.to("cpu")``
back; ``model.device`` says where they are. ``predict`` and ``loss`` take host images and targets
and move them to the model's device (the transform is the input transfer point); ``predict``
returns host NumPy arrays on either device (the output transfer point), ``loss`` Tensors on the
model's device (``.item()`` reads one).

``predict`` never records the autograd tape (no ``no_grad`` needed) and returns plain arrays.
For gradients through the inference path (saliency maps, debugging a head), call the stages
yourself, outside :func:`mrcnn_np.no_grad`: they are Modules and record the tape like any layer::

    batch, _ = model.transform(images)
    x = Tensor(batch.tensors, requires_grad=True)
    features = model.backbone(x)
    box_features = model.roi_heads.box_roi_pool(features, proposals, batch.image_sizes)
    class_logits, _ = model.roi_heads.box_predictor(model.roi_heads.box_head(box_features))
    class_logits[:, k].sum().backward()          # x.grad: (N, 3, H', W')

The anchors and RoIs a training call samples are drawn from ``rng`` when one is given, else
from the model's own Generator, ``model.generator``: seeded when the model is built (from the
``rng`` that drew the weights) or by :meth:`MaskRCNN.manual_seed`, and advanced by every draw,
so consecutive calls sample afresh, as torch's global generator does.

He et al., "Mask R-CNN" (2017); torchvision ``models/detection/mask_rcnn.py``.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..checks import check_bool, check_int, describe, trusted
from ..config import MaskRCNNConfig, as_config
from .backbone import resnet_c4_backbone, resnet_fpn_backbone
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork
from .transform import GeneralizedRCNNTransform


class MaskRCNN(nn.Module):
    """The whole model, built from ``config`` (default: torchvision's ``maskrcnn_resnet50_fpn``);
    ``rng`` (a Generator or a seed; None: seed 0) draws the initial weights."""

    def __init__(self, config: MaskRCNNConfig | None = None, rng=None):
        super().__init__()
        c = self.config = MaskRCNNConfig() if config is None else as_config(config, "MaskRCNN")
        rng = nn.init.make_rng(rng)
        self.transform = GeneralizedRCNNTransform.from_config(c)
        norm = nn.FrozenBatchNorm2d if c.frozen_batch_norm else nn.BatchNorm2d
        if c.architecture == "c4":  # res2-res4; res5 is built with the RoI heads
            self.backbone = resnet_c4_backbone(c.backbone, trainable_layers=c.trainable_backbone_layers,
                                               layers=c.backbone_layers, width=c.backbone_width, norm_layer=norm,
                                               rng=rng, dtype=c.dtype)
        else:
            self.backbone = resnet_fpn_backbone(
                c.backbone, trainable_layers=c.trainable_backbone_layers, layers=c.backbone_layers,
                width=c.backbone_width, norm_layer=norm, out_channels=c.fpn_channels,
                fpn_norm_layer=nn.BatchNorm2d if c.fpn_batch_norm else None, rng=rng, dtype=c.dtype)
        self.rpn = RegionProposalNetwork.from_config(c, rng=rng)
        self.roi_heads = RoIHeads.from_config(c, rng=rng)
        self.generator = rng.spawn(1)[0]  # the sampling draws' own stream (the weights' draws are unchanged)

    def manual_seed(self, seed: int) -> MaskRCNN:
        """Reseed the Generator that training calls without an ``rng`` sample from."""
        self.generator = np.random.default_rng(check_int("manual_seed", "seed", seed, 0))
        return self

    @property
    def dtype(self):
        return np.dtype(self.roi_heads.box_predictor.cls_score.weight.dtype)

    @no_grad()
    def predict(self, images: list) -> list:
        """Detections for each image, in the image's own pixels, as host NumPy arrays whatever the
        model's device (the images move to it first). Runs without the autograd tape whatever the
        caller does (see the module docstring for gradients)."""
        batch, _ = self.transform(images, dtype=self.dtype, device=self.device)  # the inputs are checked here
        with trusted():  # the stages' inputs are the model's own results: no value re-checked (each a sync)
            features = self.backbone(batch.tensors)
            proposals, _ = self.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)
            results = self.roi_heads.predict(features, proposals, batch.image_sizes)
            return self.transform.postprocess(results, batch.image_sizes, batch.original_sizes, to_host=True)

    def loss(self, images: list, targets: list, rng=None, sampled=None, return_sampled: bool = False):
        """The five training losses (Tensors on the tape); four, without ``loss_mask``, for a model
        without the mask branch (Faster R-CNN), whose targets need no ``masks``.

        The anchors and RoIs are drawn with ``rng`` (a Generator or a seed: the same ``rng``
        gives the same losses), by default with ``model.generator``; ``sampled = {"rpn": (pos,
        neg), "roi_heads": (pos, neg)}`` reproduces particular draws. With ``return_sampled``
        the result is ``(losses, sampled)``, the draws in that form."""
        if targets is None:
            raise TypeError("loss: targets must be a list of dicts (one per image) with boxes, labels and masks, "
                            "got None")
        rng = self.generator if rng is None else nn.init.make_rng(rng)
        sampled = check_sampled(sampled, len(images) if isinstance(images, (list, tuple)) else None)
        check_bool("loss", "return_sampled", return_sampled)
        batch, targets = self.transform(images, targets, dtype=self.dtype, num_classes=self.config.num_classes,
                                        device=self.device, require_masks=self.roi_heads.has_mask())
        with trusted():  # images and targets were checked by the transform; the rest is the model's own
            features = self.backbone(batch.tensors)
            gt_boxes = [t["boxes"] for t in targets]
            proposals, _, rpn_losses, rpn_sampled = self.rpn.loss(batch.tensors.shape[-2:], batch.image_sizes,
                                                                  features, gt_boxes, rng, sampled.get("rpn"))
            head_losses, roi_sampled = self.roi_heads.loss(features, proposals, batch.image_sizes, targets, rng,
                                                           sampled.get("roi_heads"))
        losses = {**rpn_losses, **head_losses}
        return (losses, {"rpn": rpn_sampled, "roi_heads": roi_sampled}) if return_sampled else losses

    def __call__(self, images: list, targets: list | None = None, **kwargs):
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model needs targets; call model.eval() for inference")
            return self.loss(images, targets, **kwargs)
        return self.predict(images)


def check_sampled(sampled, num_images: int | None) -> dict:
    """``sampled`` of :meth:`MaskRCNN.loss`: None, or a dict with the keys ``"rpn"`` and/or
    ``"roi_heads"``, each ``(pos_masks, neg_masks)``, lists of one mask per image."""
    if sampled is None:
        return {}
    if not isinstance(sampled, dict):
        raise TypeError(f"loss: sampled must be None or a dict {{'rpn': (pos, neg), 'roi_heads': (pos, neg)}} (as "
                        f"return_sampled=True gives), got {describe(sampled)}")
    unknown = sorted(set(sampled) - {"rpn", "roi_heads"}, key=repr)
    if unknown:
        raise ValueError(f"loss: sampled has unknown keys {unknown}; expected 'rpn' and/or 'roi_heads'")
    for key, draw in sampled.items():
        if draw is None:
            continue
        if not isinstance(draw, (tuple, list)) or len(draw) != 2 or not all(isinstance(m, (list, tuple)) for m in draw):
            raise TypeError(f"loss: sampled[{key!r}] must be (pos_masks, neg_masks), two lists of one mask per "
                            f"image, got {describe(draw)}")
        for part, masks in zip(("pos_masks", "neg_masks"), draw, strict=True):
            if num_images is not None and len(masks) != num_images:
                raise ValueError(f"loss: sampled[{key!r}] {part} has {len(masks)} mask(s) for {num_images} image(s)")
    return sampled
