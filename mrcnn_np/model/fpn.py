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
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F


class FeaturePyramidNetwork(nn.Module):
    def __init__(self, in_channels_list, out_channels: int = 256, *, rng=None, dtype=np.float32):
        super().__init__()
        rng = nn.init.make_rng(rng)
        # each block is a one-conv Sequential, as torchvision's Conv2dNormActivation: keys "i.0.*"
        self.inner_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, out_channels, 1, rng=rng, dtype=dtype)) for c in in_channels_list
        )
        self.layer_blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1, rng=rng, dtype=dtype))
            for _ in in_channels_list
        )
        for block in (*self.inner_blocks, *self.layer_blocks):  # torchvision: kaiming_uniform(a=1), bias 0
            nn.init.kaiming_uniform_(block[0].weight.data, a=1, rng=rng)
            nn.init.zeros_(block[0].bias.data)

    def forward(self, features: list) -> dict:
        """[C2, C3, C4, C5] -> {"0": P2, ..., "3": P5, "pool": P6}."""
        if len(features) != len(self.inner_blocks):
            raise ValueError(f"FPN expects {len(self.inner_blocks)} feature maps, got {len(features)}")
        last_inner = self.inner_blocks[-1](features[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for i in range(len(features) - 2, -1, -1):
            lateral = self.inner_blocks[i](features[i])
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, self.layer_blocks[i](last_inner))
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))  # P6
        names = [str(i) for i in range(len(features))] + ["pool"]
        return dict(zip(names, results, strict=True))
