"""Weights shipped with the package (see :mod:`mrcnn_np.pretrained`)."""
