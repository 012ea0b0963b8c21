"""Detection operations on arrays, one per file, named and shaped like ``torchvision.ops``."""

from .boxes import box_area, box_iou, clip_boxes_to_image, remove_small_boxes
from .nms import batched_nms, nms

__all__ = ["batched_nms", "box_area", "box_iou", "clip_boxes_to_image", "nms", "remove_small_boxes"]
