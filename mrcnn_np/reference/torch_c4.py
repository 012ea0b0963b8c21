"""The two pieces of glue the ResNet-C4 twin needs around torchvision's own modules (torchvision has
no C4 detection model): the backbone that returns C4 alone, and the res5 box head (res5, then the
average over each RoI). Imports torch: :func:`mrcnn_np.reference.twins.torchvision_model` imports
this module only for a C4 configuration."""

from __future__ import annotations

import torch


class C4Backbone(torch.nn.Module):
    """``body`` (torchvision's ``IntermediateLayerGetter`` of a ResNet up to ``layer3``) with the
    ``out_channels`` torchvision's ``MaskRCNN`` asks of a backbone: images -> ``{"0": C4}``."""

    def __init__(self, body: torch.nn.Module, out_channels: int):
        super().__init__()
        self.body = body
        self.out_channels = out_channels

    def forward(self, x):
        return self.body(x)


class Res5BoxHead(torch.nn.Module):
    """``res5`` (torchvision's ``ResNet.layer4``), then the mean over each RoI's map (detectron2's
    ``Res5ROIHeads``: ``box_features.mean(dim=[2, 3])``): (R, 16w, 14, 14) -> (R, 32w)."""

    def __init__(self, res5: torch.nn.Module):
        super().__init__()
        self.res5 = res5

    def forward(self, x):
        return self.res5(x).mean(dim=(2, 3))
