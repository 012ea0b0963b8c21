"""Building torchvision reference models with random weights and non-trivial frozen BN."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone as tv_resnet_fpn_backbone

from mrcnn_np.convert import load_torchvision_state_dict
from mrcnn_np.model.backbone import resnet_fpn_backbone


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


def calibrate_frozen_bn(model: torch.nn.Module, run, seed: int = 1) -> None:
    """Set every FrozenBatchNorm2d's (and BatchNorm2d's running) statistics to its input's per-channel mean and variance
    during ``run()`` (one forward pass), then perturb statistics and affine terms randomly:
    activations stay O(1) through the network as in a trained one -- without this a random
    ResNet's activations grow to ~1e3 and the heads produce degenerate boxes -- and still no
    BN is the identity."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    norms = (FrozenBatchNorm2d, torch.nn.BatchNorm2d)  # BatchNorm2d: its running statistics
    g = torch.Generator().manual_seed(seed)
    handles = []

    def set_stats(module, inputs):
        x = inputs[0].detach()
        with torch.no_grad():
            module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
            module.running_var.copy_(x.var(dim=(0, 2, 3)) * (torch.rand(x.shape[1], generator=g, dtype=x.dtype) + 0.5))
            module.weight.copy_(torch.rand(x.shape[1], generator=g, dtype=x.dtype) + 0.5)
            module.bias.copy_(torch.randn(x.shape[1], generator=g, dtype=x.dtype) * 0.1)
        handles.remove(handle_of[module])
        handle_of[module].remove()

    handle_of = {}
    for m in model.modules():
        if isinstance(m, norms):
            handle_of[m] = m.register_forward_pre_hook(set_stats)
            handles.append(handle_of[m])
    with torch.no_grad():
        run()
    for h in handles:  # modules the pass did not reach
        h.remove()
