"""mrcnn-np: Mask R-CNN written out in NumPy, verified against torchvision."""

from .autograd import Tensor, no_grad

__version__ = "0.1.0"
__all__ = ["Tensor", "no_grad", "__version__"]
