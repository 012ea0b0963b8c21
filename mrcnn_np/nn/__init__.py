"""Neural-network layers: functions with explicit backward passes, modules, init, optimisers."""

from . import functional, init, optim
from .modules import (
    BatchNorm2d,
    Conv2d,
    ConvTranspose2d,
    Flatten,
    FrozenBatchNorm2d,
    Linear,
    MaxPool2d,
    Module,
    ModuleList,
    Parameter,
    ReLU,
    Sequential,
)

__all__ = [
    "BatchNorm2d", "Conv2d", "ConvTranspose2d", "Flatten", "FrozenBatchNorm2d", "Linear", "MaxPool2d",
    "Module", "ModuleList", "Parameter", "ReLU", "Sequential", "functional", "init", "optim",
]
