"""Building torchvision reference models with random weights and non-trivial frozen BN."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_resnet_fpn_backbone

from mrcnn_np.convert import load_torchvision_state_dict
from mrcnn_np.model.backbone import resnet_fpn_backbone
from mrcnn_np.reference.twins import calibrate_norms


def randomize_frozen_bn(module: torch.nn.Module, seed: int = 1) -> None:
    """Give every FrozenBatchNorm2d random statistics and affine terms, so none is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, b in module.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g, dtype=b.dtype) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype) * 0.1)
            elif name.endswith("weight"):
                b.copy_(torch.rand(b.shape, generator=g, dtype=b.dtype) + 0.5)


def backbone_pair(name="resnet50", dtype=np.float64, trainable_layers=3, seed=0):
    """(torchvision BackboneWithFPN, ours) with the same random weights and randomised BN."""
    torch.manual_seed(seed)
    tv = tv_resnet_fpn_backbone(backbone_name=name, weights=None, trainable_layers=trainable_layers)
    tv = tv.to(torch.float64 if dtype == np.float64 else torch.float32)
    randomize_frozen_bn(tv, seed + 1)
    ours = resnet_fpn_backbone(name, trainable_layers=trainable_layers, dtype=dtype)
    load_torchvision_state_dict(ours, tv)
    return tv, ours


# statistics calibrated on a real image, then randomised: the library's own helper (mrcnn-np verify uses it)
calibrate_frozen_bn = calibrate_norms
