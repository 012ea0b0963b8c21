"""Mask R-CNN: transform -> backbone + FPN -> RPN -> RoI heads -> back to the image.

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
He et al., "Mask R-CNN" (2017); torchvision ``models/detection/mask_rcnn.py``.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..config import MaskRCNNConfig
from .anchors import AnchorGenerator
from .backbone import resnet_fpn_backbone
from .roi_heads import FastRCNNPredictor, MaskRCNNHeads, MaskRCNNPredictor, RoIHeads, TwoMLPHead
from .rpn import RegionProposalNetwork, RPNHead
from .transform import GeneralizedRCNNTransform, as_chw_float


class MaskRCNN(nn.Module):
    def __init__(self, config: MaskRCNNConfig | None = None, rng=None):
        super().__init__()
        c = self.config = config or MaskRCNNConfig()
        rng = nn.init.make_rng(rng)
        dt = c.dtype
        self.transform = GeneralizedRCNNTransform(c.min_size, c.max_size, c.image_mean, c.image_std)
        self.backbone = resnet_fpn_backbone(
            c.backbone, c.trainable_backbone_layers, layers=c.backbone_layers, width=c.backbone_width,
            norm_layer=nn.FrozenBatchNorm2d if c.frozen_batch_norm else nn.BatchNorm2d,
            out_channels=c.fpn_channels, rng=rng, dtype=dt)
        anchors = AnchorGenerator(c.anchor_sizes, c.aspect_ratios)
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(c.fpn_channels, anchors.num_anchors_per_location()[0], rng=rng, dtype=dt),
            c.rpn_fg_iou_thresh, c.rpn_bg_iou_thresh, c.rpn_batch_size_per_image, c.rpn_positive_fraction,
            c.rpn_pre_nms_top_n, c.rpn_post_nms_top_n, c.rpn_nms_thresh, c.rpn_score_thresh)
        self.roi_heads = RoIHeads(
            TwoMLPHead(c.fpn_channels * 7 * 7, c.representation_size, rng=rng, dtype=dt),
            FastRCNNPredictor(c.representation_size, c.num_classes, rng=rng, dtype=dt),
            MaskRCNNHeads(c.fpn_channels, c.mask_layers, rng=rng, dtype=dt),
            MaskRCNNPredictor(c.mask_layers[-1], c.mask_dim_reduced, c.num_classes, rng=rng, dtype=dt),
            c.box_fg_iou_thresh, c.box_bg_iou_thresh, c.box_batch_size_per_image, c.box_positive_fraction,
            c.bbox_reg_weights, c.box_score_thresh, c.box_nms_thresh, c.box_detections_per_img)

    @property
    def dtype(self):
        return np.dtype(self.roi_heads.box_predictor.cls_score.weight.dtype)

    def predict(self, images: list) -> list:
        """Detections for each image, in the image's own pixels."""
        original_sizes = [tuple(as_chw_float(im).shape[-2:]) for im in images]
        batch, _ = self.transform(images, dtype=self.dtype)
        features = self.backbone(batch.tensors)
        proposals, _ = self.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, features)
        results = self.roi_heads.predict(features, proposals, batch.image_sizes)
        return self.transform.postprocess(results, batch.image_sizes, original_sizes)

    def loss(self, images: list, targets: list, rng=None, sampled=None) -> dict:
        """The five training losses. ``sampled = {"rpn": (pos, neg), "roi_heads": (pos, neg)}``
        reproduces particular draws of anchors and RoIs; otherwise ``rng`` draws them."""
        rng = nn.init.make_rng(rng)
        sampled = sampled or {}
        batch, targets = self.transform(images, targets, dtype=self.dtype)
        features = self.backbone(batch.tensors)
        gt_boxes = [t["boxes"] for t in targets]
        proposals, _, rpn_losses = self.rpn.train_step(batch.tensors.shape[-2:], batch.image_sizes, features,
                                                       gt_boxes, rng, sampled.get("rpn"))
        head_losses = self.roi_heads.train_step(features, proposals, batch.image_sizes, targets, rng,
                                                sampled.get("roi_heads"))
        return {**rpn_losses, **head_losses}

    def __call__(self, images: list, targets: list | None = None, **kwargs):
        if self.training:
            if targets is None:
                raise ValueError("in training mode the model needs targets; call model.eval() for inference")
            return self.loss(images, targets, **kwargs)
        return self.predict(images)
