"""ResNet with bottleneck blocks, and the ResNet-FPN backbone of Mask R-CNN.

In:  images (N, 3, H, W), normalised, H and W multiples of 32.
Out: :class:`ResNet` returns the stage outputs C2..C5 as a list,
     (N, 4w, H/4, W/4), (N, 8w, H/8, W/8), (N, 16w, H/16, W/16), (N, 32w, H/32, W/32)
     with base width w = 64 for ResNet-50/101; :class:`BackboneWithFPN` returns the FPN
     levels as a dict ``{"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}``, 256 channels.

He et al., "Deep Residual Learning for Image Recognition" (2016), with torchvision's
"ResNet v1.5" placement of the stride on the 3x3 conv of the bottleneck; Mask R-CNN
(He et al. 2017) sec. 3 "Network Architecture". Torchvision: ``models/resnet.py``,
``models/detection/backbone_utils.py`` (``resnet_fpn_backbone``, ``BackboneWithFPN``).

Parameter names are torchvision's: ``body.layer1.0.conv1.weight``,
``body.layer1.0.downsample.1.running_var``, ``fpn.inner_blocks.0.0.weight`` ...
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..nn import functional as F
from ..nn.fused import conv_norm
from .fpn import FeaturePyramidNetwork

# blocks per stage
RESNET_LAYERS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride) -> 1x1 (expand x4), each followed by a norm; ReLU after the
    first two and after the residual sum. ``downsample`` projects the identity when the
    shape changes: (N, C_in, H, W) -> (N, 4 * planes, H / stride, W / stride)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm_layer=nn.FrozenBatchNorm2d, rng=None, dtype=np.float32):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False, rng=rng, dtype=dtype)
        self.bn1 = norm_layer(planes, dtype=dtype)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False, rng=rng, dtype=dtype)
        self.bn2 = norm_layer(planes, dtype=dtype)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False, rng=rng, dtype=dtype)
        self.bn3 = norm_layer(planes * self.expansion, dtype=dtype)
        self.downsample = downsample

    def forward(self, x):
        # relu(norm(conv(x)) [+ identity]); one folded, fused conv each at inference (mrcnn_np.nn.fused)
        out = conv_norm(self.conv1, self.bn1, x, relu=True)
        out = conv_norm(self.conv2, self.bn2, out, relu=True)
        identity = x if self.downsample is None else conv_norm(self.downsample[0], self.downsample[1], x)
        return conv_norm(self.conv3, self.bn3, out, relu=True, residual=identity)


class ResNet(nn.Module):
    """The ResNet body without its classifier: stem (7x7/2 conv, norm, ReLU, 3x3/2 max-pool)
    then four stages of bottlenecks with widths ``w, 2w, 4w, 8w`` (outputs x4 of that).

    ``layers``: blocks per stage, (3, 4, 6, 3) for ResNet-50; ``width``: w, 64 for the
    standard networks; smaller values give fast CPU configurations.
    """

    def __init__(self, layers=(3, 4, 6, 3), width: int = 64, norm_layer=nn.FrozenBatchNorm2d, *, rng=None,
                 dtype=np.float32):
        super().__init__()
        rng = nn.init.make_rng(rng)
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False, rng=rng, dtype=dtype)
        self.bn1 = norm_layer(width, dtype=dtype)
        inplanes = width
        for i, blocks in enumerate(layers):  # fewer than 4 stages: the C4 backbone (res5 is then a head)
            stage = make_stage(inplanes, width * 2**i, blocks, 1 if i == 0 else 2, norm_layer, rng=rng, dtype=dtype)
            setattr(self, f"layer{i + 1}", stage)
            inplanes = width * 2**i * Bottleneck.expansion
        self.out_channels = [width * 2**i * Bottleneck.expansion for i in range(len(layers))]
        for module in self.modules():  # torchvision's init: He normal, fan_out, for every conv
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight.data, mode="fan_out", nonlinearity="relu", rng=rng)

    def forward(self, x) -> list:
        """(N, 3, H, W) -> [C2, C3, C4, C5] (as many as there are stages)."""
        x = conv_norm(self.conv1, self.bn1, x, relu=True)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        features = []
        for i in range(1, len(self.out_channels) + 1):
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return features


def make_stage(inplanes: int, planes: int, blocks: int, stride: int, norm_layer=nn.FrozenBatchNorm2d, *, rng=None,
               dtype=np.float32) -> nn.Sequential:
    """One ResNet stage, torchvision's ``ResNet._make_layer``: ``blocks`` bottlenecks of width ``planes``
    (output ``4 * planes``), the first with ``stride`` and a 1x1 projection of the identity (conv + norm)
    when the shape changes. Convs keep their default initialisation (the ResNet re-draws them)."""
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False, rng=rng, dtype=dtype),
            norm_layer(planes * Bottleneck.expansion, dtype=dtype),
        )
    stage = [Bottleneck(inplanes, planes, stride, downsample, norm_layer, rng, dtype)]
    stage += [Bottleneck(planes * Bottleneck.expansion, planes, 1, None, norm_layer, rng, dtype)
              for _ in range(1, blocks)]
    return nn.Sequential(*stage)


def freeze_layers(body: ResNet, trainable_layers: int) -> None:
    """torchvision's rule: only the last ``trainable_layers`` of
    (conv1, layer1, layer2, layer3, layer4) train; 5 also trains ``bn1``."""
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in body.named_parameters():
        parameter.requires_grad = any(name.startswith(layer) for layer in layers_to_train)


class BackboneWithFPN(nn.Module):
    """``body`` (a :class:`ResNet`) followed by ``fpn``: images -> {"0", "1", "2", "3", "pool"}."""

    def __init__(self, body: ResNet, out_channels: int = 256, fpn_norm_layer=None, *, rng=None, dtype=np.float32):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.out_channels, out_channels, fpn_norm_layer, rng=rng, dtype=dtype)
        self.out_channels = out_channels

    def forward(self, x) -> dict:
        return self.fpn(self.body(x))


class BackboneC4(nn.Module):
    """The Mask R-CNN paper's ResNet-C4 backbone (fig. 4, left): ``body``, a :class:`ResNet` of the
    first three stages (res2-res4), whose last output C4 (stride 16, ``16 w`` channels) is the one
    feature map: images -> ``{"0": C4}``. res5 is the RoI head's (:class:`~mrcnn_np.model.roi_heads.Res5Head`)."""

    def __init__(self, body: ResNet):
        super().__init__()
        self.body = body
        self.out_channels = body.out_channels[-1]

    def forward(self, x) -> dict:
        return {"0": self.body(x)[-1]}


def resnet_c4_backbone(name: str = "resnet50", *, trainable_layers: int = 3, layers=None, width: int = 64,
                       norm_layer=nn.FrozenBatchNorm2d, rng=None, dtype=np.float32) -> BackboneC4:
    """The C4 backbone of ResNet ``name`` (or ``layers``, ``width``): its stem and first three stages,
    frozen by torchvision's rule (:func:`freeze_layers`: ``trainable_layers=3`` trains layer2 and layer3
    here; the fourth stage lives in the RoI heads)."""
    if layers is None:
        if name not in RESNET_LAYERS:
            raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(RESNET_LAYERS)} or layers=")
        layers = RESNET_LAYERS[name]
    body = ResNet(layers[:3], width, norm_layer, rng=nn.init.make_rng(rng), dtype=dtype)
    freeze_layers(body, trainable_layers)
    return BackboneC4(body)


def resnet_fpn_backbone(name: str = "resnet50", *, trainable_layers: int = 3, layers=None, width: int = 64,
                        norm_layer=nn.FrozenBatchNorm2d, out_channels: int = 256, fpn_norm_layer=None, rng=None,
                        dtype=np.float32) -> BackboneWithFPN:
    """torchvision's ``resnet_fpn_backbone(backbone_name=name, weights=None, trainable_layers=...)``.

    ``name``: "resnet50" or "resnet101"; or pass ``layers`` (blocks per stage) and ``width``
    for a smaller network, e.g. ``layers=(1, 1, 1, 1), width=16``. ``norm_layer``:
    FrozenBatchNorm2d (torchvision's choice for fine-tuning pretrained weights) or
    BatchNorm2d (for training from scratch). ``fpn_norm_layer``: None (v1) or BatchNorm2d after every
    FPN conv (torchvision's v2, ``_resnet_fpn_extractor(..., norm_layer=nn.BatchNorm2d)``).
    """
    if layers is None:
        if name not in RESNET_LAYERS:
            raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(RESNET_LAYERS)} or layers=")
        layers = RESNET_LAYERS[name]
    rng = nn.init.make_rng(rng)
    body = ResNet(layers, width, norm_layer, rng=rng, dtype=dtype)
    freeze_layers(body, trainable_layers)
    return BackboneWithFPN(body, out_channels, fpn_norm_layer, rng=rng, dtype=dtype)
