"""The stages of Mask R-CNN, one per file, in the order the data flows through them."""
