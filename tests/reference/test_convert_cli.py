"""``mrcnn-np convert``: a torchvision Mask R-CNN weights file becomes a .safetensors file that
``load_model`` rebuilds with the same arrays, and predicts what torchvision predicts."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from mrcnn_np import cli
from mrcnn_np.convert import load_model
from mrcnn_np.reference.twins import sample_image, to_torch


def test_convert_a_torchvision_file(tmp_path, capsys):
    torch.manual_seed(0)
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3, min_size=320, max_size=512).eval()
    source, target = tmp_path / "tv.pth", tmp_path / "ours.safetensors"
    torch.save({"model": tv.state_dict()}, source)  # the layout of torchvision's reference checkpoints
    assert cli.main(["convert", str(source), str(target)]) == 0
    assert "3 classes" in capsys.readouterr().out
    ours = load_model(target)
    assert ours.config.num_classes == 3
    # weights=None builds BatchNorm2d: the file's num_batches_tracked counters say so, and so does the model
    assert ours.config.frozen_batch_norm is False
    theirs = {k: v.numpy() for k, v in tv.state_dict().items()}
    mine = ours.state_dict()
    assert set(mine) == set(theirs)
    for k, v in theirs.items():
        np.testing.assert_array_equal(mine[k], v, err_msg=k)
    # the file carries torchvision's architecture, not its transform sizes (800 / 1333 by default)
    ours.transform.min_size, ours.transform.max_size = 320, 512
    image = sample_image()
    with torch.no_grad():
        ref = tv(to_torch([image], np.float32))[0]
    out = ours([image.astype(np.float32)])[0]
    assert len(ref["scores"]) > 5
    np.testing.assert_allclose(out["scores"][:5], ref["scores"][:5].numpy(), atol=1e-4)


def test_convert_refuses_what_is_not_a_mask_rcnn(tmp_path, capsys):
    source = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 3)}, source)
    assert cli.main(["convert", str(source), str(tmp_path / "x.safetensors")]) == 2
    assert "not a torchvision Mask R-CNN or Faster R-CNN state dict" in capsys.readouterr().err
