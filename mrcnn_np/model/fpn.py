"""Feature Pyramid Network: lateral 1x1 convs, a top-down pathway, 3x3 output convs, P6.

In:  [C2, C3, C4, C5], channels ``in_channels_list``, each level half the size of the last.
Out: ``{"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}``, all ``out_channels`` (256) wide.

    inner_5 = lateral_5(C5)                      P5 = output_5(inner_5)
    inner_4 = lateral_4(C4) + up(inner_5)        P4 = output_4(inner_4)    up = nearest resize
    ...                                          P6 = max_pool(P5, kernel 1, stride 2)

Lin et al., "Feature Pyramid Networks for Object Detection" (2017), sec. 3; torchvision
``ops/feature_pyramid_network.py`` (``FeaturePyramidNetwork``, ``LastLevelMaxPool``).
The top-down upsampling resizes to the lateral's exact size (not a fixed factor 2), so
odd sizes work. Parameter names: ``inner_blocks.i.0.weight``, ``layer_blocks.i.0.weight``.

With ``norm_layer`` (torchvision's v2 recipe: BatchNorm2d) every conv loses its bias and is followed
by the norm: ``inner_blocks.i.1.running_mean`` ..., as torchvision's ``Conv2dNormActivation``.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F
from ..nn.fused import conv_norm


def conv_block(in_channels: int, out_channels: int, kernel_size: int, norm_layer=None, *, rng=None,
               dtype=np.float32) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` without activation: ``Sequential(conv)``, or
    ``Sequential(conv without bias, norm_layer)``; "same" padding."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=norm_layer is None,
                     rng=rng, dtype=dtype)
    return nn.Sequential(conv) if norm_layer is None else nn.Sequential(conv, norm_layer(out_channels, dtype=dtype))


def run_block(block: nn.Sequential, x, relu: bool = False):
    """``block``'s conv, its norm if it has one, and ``relu``: one folded conv at inference (nn.fused)."""
    return conv_norm(block[0], block[1] if len(block) > 1 else None, x, relu=relu)


class FeaturePyramidNetwork(nn.Module):
    def __init__(self, in_channels_list, out_channels: int = 256, norm_layer=None, *, rng=None,
                 dtype=np.float32):
        super().__init__()
        rng = nn.init.make_rng(rng)
        # each block is torchvision's Conv2dNormActivation: keys "i.0.*" (conv) and, with a norm, "i.1.*"
        self.inner_blocks = nn.ModuleList(
            conv_block(c, out_channels, 1, norm_layer, rng=rng, dtype=dtype) for c in in_channels_list
        )
        self.layer_blocks = nn.ModuleList(
            conv_block(out_channels, out_channels, 3, norm_layer, rng=rng, dtype=dtype) for _ in in_channels_list
        )
        for block in (*self.inner_blocks, *self.layer_blocks):  # torchvision: kaiming_uniform(a=1), bias 0
            nn.init.kaiming_uniform_(block[0].weight.data, a=1, rng=rng)
            if block[0].bias is not None:
                nn.init.zeros_(block[0].bias.data)

    def forward(self, features: list) -> dict:
        """[C2, C3, C4, C5] -> {"0": P2, ..., "3": P5, "pool": P6}."""
        if len(features) != len(self.inner_blocks):
            raise ValueError(f"FPN expects {len(self.inner_blocks)} feature maps, got {len(features)}")
        last_inner = run_block(self.inner_blocks[-1], features[-1])
        results = [run_block(self.layer_blocks[-1], last_inner)]
        for i in range(len(features) - 2, -1, -1):
            lateral = run_block(self.inner_blocks[i], features[i])
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, run_block(self.layer_blocks[i], last_inner))
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))  # P6
        names = [str(i) for i in range(len(features))] + ["pool"]
        return dict(zip(names, results, strict=True))
