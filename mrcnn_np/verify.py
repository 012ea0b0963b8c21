"""``mrcnn-np verify``: run torchvision's Mask R-CNN and ours on the same photograph with the same
random weights, and tabulate how closely every stage agrees.

Needs the ``reference`` extra (torch + torchvision); :func:`verify` raises ImportError with the
install command when it is missing. The torchvision model is by default the fine-tuning recipe of
``maskrcnn_resnet50_fpn`` (ResNet-50-FPN, FrozenBatchNorm2d, 3 trainable layers), or another preset
(``--model fasterrcnn_resnet50_fpn_v2`` ...), with seeded random weights; the norms' statistics are
calibrated on the image and then randomised, so that no normalisation is the identity and
activations stay the size a trained network's are.

Stages compared, each library running its own chain end to end:
transform (the padded batch), backbone levels P2..P6, RPN proposals, the box head's outputs on
the same proposals (torchvision's), the final detections (boxes, scores, labels) and the masks
pasted into the image. Proposals and detections are paired by box before comparing, since a
float32 run may order two results with near-equal scores the other way round; the table says
how many rows that moved.

The twin models and the conversions to torch it uses live in :mod:`mrcnn_np.reference.twins`.
"""

from __future__ import annotations

import time

import numpy as np

from .backend import to_device, to_numpy
from .config import preset
from .reference import require_torch
from .reference.twins import sample_image, to_torch, twin_pair


def pair_rows(ours_boxes, ref_boxes):
    """For each reference box, the index of our closest box (max coordinate difference), and how
    many rows are not where the reference has them. float32 runs may swap rows whose scores agree
    to ~6 digits; pairing by box compares like with like."""
    ours_boxes, ref_boxes = np.asarray(to_numpy(ours_boxes), np.float64), np.asarray(ref_boxes, np.float64)
    if len(ours_boxes) != len(ref_boxes) or len(ref_boxes) == 0:
        return None, 0
    dist = np.abs(ref_boxes[:, None, :] - ours_boxes[None, :, :]).max(axis=2)  # (R, R)
    order = dist.argmin(axis=1)
    if len(np.unique(order)) != len(order):  # not a one-to-one pairing: keep the given order
        return None, 0
    return order, int((order != np.arange(len(order))).sum())


def _errors(ours, ref):
    ours, ref = np.asarray(to_numpy(ours), np.float64), np.asarray(ref, np.float64)
    if ours.shape != ref.shape:
        return None, None
    if ours.size == 0:
        return 0.0, 0.0
    diff = float(np.abs(ours - ref).max())
    scale = float(np.abs(ref).max())
    return diff, diff / scale if scale else diff


def verify(dtype=np.float64, seed: int = 0, min_size: int = 800, max_size: int = 1333, image=None,
           device: str = "cpu", model: str = "maskrcnn_resnet50_fpn") -> list[dict]:
    """Rows ``{"stage", "shape", "max_abs", "max_rel", "note"}`` for every compared stage. ``device``:
    where our model runs (``"cuda"``: on the GPU, against torchvision on the CPU). ``model``: a name of
    :data:`mrcnn_np.config.PRESETS` (torchvision's model functions: ``maskrcnn_resnet50_fpn``,
    ``fasterrcnn_resnet50_fpn``, their ``_v2``, ``maskrcnn_resnet50_c4`` against its twin; ``tiny``,
    ``tiny_v2``, ``tiny_c4``), with 91 classes and
    ``box_score_thresh=0`` (random weights give low scores: every detection up to the 100 per image is
    compared); a model without the mask branch has no mask row."""
    torch = require_torch("mrcnn-np verify")
    from torchvision.models.detection.image_list import ImageList

    from .autograd import no_grad

    image = sample_image() if image is None else image
    # box_score_thresh 0: random weights spread the class scores thin (the v2 heads' calibrated norms
    # leave every score of 91 classes under torchvision's 0.05), and a table of 0 detections checks nothing
    config = preset(model, num_classes=91, dtype=dtype, min_size=min_size, max_size=max_size, box_score_thresh=0.0)
    tv, ours = twin_pair(config, seed, image)
    ours.to(device)
    x = to_torch([image], dtype)[0]
    rows = []

    def add(stage, o, r, note=""):
        r = r.detach().cpu().numpy() if hasattr(r, "detach") else np.asarray(r)
        abs_err, rel_err = _errors(o, r)
        rows.append({"stage": stage, "shape": tuple(r.shape), "max_abs": abs_err, "max_rel": rel_err,
                     "note": note if abs_err is not None else f"shape {tuple(np.shape(o))} != {tuple(r.shape)}"})

    with torch.no_grad(), no_grad():
        t0 = time.perf_counter()
        batch, _ = ours.transform([image], dtype=np.dtype(dtype).type, device=device)
        tv_batch, _ = tv.transform([x])
        add("transform: padded batch", batch.tensors, tv_batch.tensors)
        feats = ours.backbone(batch.tensors)
        tv_feats = tv.backbone(tv_batch.tensors)
        names = ["P2", "P3", "P4", "P5", "P6"] if ours.config.architecture == "fpn" else ["C4"]
        for k, name in zip(feats, names, strict=True):
            add(f"backbone + FPN: {name}" if name != "C4" else "backbone: C4", feats[k].data, tv_feats[k])
        proposals, _ = ours.rpn.predict(batch.tensors.shape[-2:], batch.image_sizes, feats)
        tv_props, _ = tv.rpn(ImageList(tv_batch.tensors, tv_batch.image_sizes), tv_feats)
        order, moved = pair_rows(proposals[0], tv_props[0].numpy())
        paired = proposals[0] if order is None else proposals[0][order]
        add("RPN: proposals", paired, tv_props[0],
            f"{len(proposals[0])} proposals" + (f", {moved} rows reordered (near-equal scores)" if moved else ""))
        props = [to_device(p.numpy(), device) for p in tv_props]  # the same proposals into both box heads
        rh, trh = ours.roi_heads, tv.roi_heads
        logits, deltas = rh.box_predictor(rh.box_head(rh.box_roi_pool(feats, props, batch.image_sizes)))
        t_logits, t_deltas = trh.box_predictor(trh.box_head(trh.box_roi_pool(tv_feats, tv_props,
                                                                             tv_batch.image_sizes)))
        add("box head: class logits", logits.data, t_logits)
        add("box head: box deltas", deltas.data, t_deltas)
        out = ours([image])[0]
        ref = tv([x])[0]
        order, moved = pair_rows(out["boxes"], ref["boxes"].numpy())
        if order is not None:
            out = {k: v[order] for k, v in out.items()}
        same_labels = len(out["labels"]) == len(ref["labels"]) and bool(np.array_equal(out["labels"],
                                                                                      ref["labels"].numpy()))
        note = f"{len(out['boxes'])} detections, labels {'identical' if same_labels else 'DIFFER'}"
        note += f", {moved} rows reordered (near-equal scores)" if moved else ""
        add("detections: boxes", out["boxes"], ref["boxes"], note)
        add("detections: scores", out["scores"], ref["scores"])
        if ours.roi_heads.has_mask():
            add("masks (pasted, probabilities)", out["masks"], ref["masks"])
        rows.append({"stage": "wall time (s)", "shape": (), "max_abs": None, "max_rel": None,
                     "note": f"{time.perf_counter() - t0:.1f} for both libraries"})
    return rows


def format_table(rows: list[dict], dtype) -> str:
    lines = [f"mrcnn_np vs torchvision, {np.dtype(dtype).name}, same random weights",
             f"{'stage':34s} {'shape':>22s} {'max abs':>10s} {'max rel':>10s}  note"]
    for r in rows:
        num = (f"{r['max_abs']:10.2e} {r['max_rel']:10.2e}" if r["max_abs"] is not None else f"{'-':>10s} {'-':>10s}")
        lines.append(f"{r['stage']:34s} {str(r['shape']):>22s} {num}  {r['note']}")
    return "\n".join(lines)
