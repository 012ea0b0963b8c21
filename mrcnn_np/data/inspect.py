"""Inspect a dataset before training: how its objects meet the anchors, the FPN levels and the mask.

In:  a :class:`~mrcnn_np.data.coco.CocoDataset` and a :class:`~mrcnn_np.config.MaskRCNNConfig`.
Out: :func:`inspect_data` -> a plain, JSON-ready dict: ``ground_truths`` (one dict per object),
     ``summary`` and ``settings``; :func:`format_report` -> the terminal table; :func:`save_report`
     -> ``inspect.json`` and four figures.

Each image and its target go through the model's transform as in training (GeneralizedRCNNTransform:
resize to ``min_size`` / ``max_size``, masks nearest, pad to a multiple of 32; one image per batch, no
flip), so every number is in the model's own coordinates. Then, with the library's own stages:

    anchors     AnchorGenerator.from_config on the padded image's feature maps (stride s: ceil(H / s));
                box_iou with every anchor; the RPN's Matcher(rpn_fg_iou_thresh 0.7, rpn_bg_iou_thresh 0.3,
                allow_low_quality_matches=True): the best IoU and its anchor's level, ``positives`` (anchors
                assigned to the object), ``low_quality_only`` (no anchor reaches the fg threshold: every
                positive comes from the low-quality rule), ``unmatched`` (no anchor assigned at all: none
                overlaps, or its best anchors overlap another object more)
    RoI level   MultiScaleRoIAlign.setup_scales -> LevelMapper: the level the box and mask heads pool the
                object from, floor(4 + log2(sqrt(w h) / 224)) clamped to the pooled levels
    mask        the mask target as training builds it (project_masks_on_boxes: RoIAlign of the mask on
                its box to M x M, M = 28 for the FPN heads), pasted back at the box (paste_masks_in_image),
                >= 0.5, and its IoU with the mask (None when resizing left the mask no pixel)
    too small   ``too_small_for_stride``: a box side shorter than the stride of the finest map the RoI
                heads pool from (4 px on P2): the object is less than one feature cell across.
                ``too_small_for_anchors``: ``anchor_shape_iou`` -- the best IoU of any anchor shape centred
                on the object, the most any anchor could reach, grid offsets aside -- is below the fg
                threshold *and* sqrt(w h) is below the smallest anchor size: the object is smaller than the
                smallest anchor can match at 0.7 (a square of side below 0.84 x a square anchor's side,
                sqrt(0.7) = 0.84), so it gets positives only from the low-quality rule
    suggestion  aspect ratios (the same on every level, as many as configured): the quantiles of h / w
                evenly spaced from 10% to 90% (10%, 50%, 90% for three), taken on log(h / w), kept at least
                a factor 1.25 apart around the median, rounded to 2 decimals. Sizes an octave apart, as
                the FPN levels are (one per level: ((s,), (2s,), ...); C4's one level: (s, 2s, ...)), each
                rounded to whole pixels, with s the one of 32 candidates s0 * 2^(k/8), k = -24..7 (s0 the
                smallest configured size, 32: three octaves down, one up), under which the most objects
                have an anchor shape of IoU >= the fg threshold centred on them (``anchor_shape_iou``); on
                ties the one nearest s0, so that each level's anchors stay near their stride's scale
                (torchvision: 8 strides): a centred shape ignores the anchor grid's offsets, which grow with
                the stride (an object of a few pixels may stay below 0.7 on P2's 4-pixel grid whatever the
                size). The anchor statistics are then recomputed with them (``suggestion.before`` /
                ``after``): the real outcome, grid included.

Ren et al., "Faster R-CNN" (2015), sec. 3.1.2; Lin et al., "Feature Pyramid Networks" (2017), eq. 1;
He et al., "Mask R-CNN" (2017), sec. 3.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import FEATURE_MAPS, as_config
from ..model.anchors import AnchorGenerator
from ..model.roi_heads import project_masks_on_boxes
from ..model.transform import GeneralizedRCNNTransform, paste_masks_in_image
from ..ops import box_iou
from ..ops.matcher import Matcher
from ..ops.poolers import MultiScaleRoIAlign
from ..progress import progress_bar

# stride of each feature map of the backbone (config.FEATURE_MAPS order): ResNet's stride-2 convs pad, so
# a map of stride s over a padded image of height H is ceil(H / s); P6 is P5 max-pooled with stride 2
STRIDES = {"fpn": (4, 8, 16, 32, 64), "c4": (16,)}
MASK_THRESHOLD = 0.5  # as evaluation and predict binarise a pasted mask (mrcnn_np.evaluate)
PHASES, RATIO_QUANTILES, MIN_RATIO_STEP = 8, (0.1, 0.9), 1.25  # the suggestion's rule (module docstring)


def level_name(config, k: int) -> str:
    """The name of the map of stride 2^k: P2..P6 for the FPN, C4 for the C4 backbone."""
    return f"{'P' if config.architecture == 'fpn' else 'C'}{k}"


def mask_size(config) -> int:
    """M of the M x M mask targets: the mask heads upsample the pooled RoI by 2 (28 for 14); C4's res5
    head halves it first (14)."""
    return config.mask_roi_output_size * (1 if config.architecture == "c4" else 2)


def feature_sizes(config, padded_size) -> list[tuple[int, int]]:
    """The (h, w) of every backbone map (FEATURE_MAPS order) for a padded batch of ``padded_size``."""
    H, W = padded_size
    return [(math.ceil(H / s), math.ceil(W / s)) for s in STRIDES[config.architecture]]


# --- one image ---------------------------------------------------------------------------------
def model_view(transform: GeneralizedRCNNTransform, image, target: dict, config) -> dict:
    """An image and its target, as training resizes them -> boxes (G, 4), masks (G, h, w) uint8 or None,
    ``image_size`` (h, w) after resizing and ``padded_size`` (H, W) of the batch."""
    masks = "masks" in target
    batch, (resized,) = transform([image], [{k: target[k] for k in ("boxes", "labels", "masks") if k in target}],
                                  dtype=config.dtype, num_classes=config.num_classes, require_masks=masks)
    return {"boxes": resized["boxes"], "masks": resized["masks"] if masks else None,
            "image_size": tuple(batch.image_sizes[0]), "padded_size": tuple(int(s) for s in batch.tensors.shape[-2:])}


def anchor_match(boxes, padded_size, config, generator: AnchorGenerator, matcher: Matcher) -> dict:
    """Boxes (G, 4) of one image against its anchors -> per box: ``best_iou`` (G,), ``best_level`` (G,)
    index into the anchor levels, ``positives`` (G,) anchors the matcher assigns to it."""
    sizes = feature_sizes(config, padded_size)
    per_level = generator.grid_anchors(padded_size, sizes, np.dtype(config.dtype))  # [(h_l * w_l * A_l, 4)]
    anchors = np.concatenate(per_level)  # (A, 4)
    iou = box_iou(boxes.astype(anchors.dtype), anchors)  # (G, A), as the RPN computes it
    matches = matcher(iou)  # (A,) gt index, -1 background, -2 ignored
    best = iou.argmax(axis=1)
    ends = np.cumsum([len(a) for a in per_level])
    return {"best_iou": iou.max(axis=1), "best_level": np.searchsorted(ends, best, side="right"),
            "positives": np.bincount(matches[matches >= 0], minlength=len(boxes))}


def roi_levels(boxes, image_size, padded_size, config) -> np.ndarray:
    """(G,) k of the map the RoI heads pool each box from (2..5 for P2..P5), by the poolers' LevelMapper."""
    names = FEATURE_MAPS[config.architecture]
    sizes = dict(zip(names, feature_sizes(config, padded_size), strict=True))
    pooler = MultiScaleRoIAlign(config.roi_featmap_names, config.mask_roi_output_size, config.roi_sampling_ratio)
    maps = [np.empty((1, 0, *sizes[n]), dtype=config.dtype) for n in config.roi_featmap_names]  # only shapes read
    _, mapper = pooler.setup_scales(maps, [image_size])
    return mapper([boxes]) + mapper.k_min


def mask_round_trip(boxes, masks, image_size, M: int) -> np.ndarray:
    """(G,) IoU of each mask (G, h, w) with its M x M training target pasted back at its box and
    thresholded; NaN where the mask has no pixel."""
    if len(boxes) == 0:
        return np.zeros(0)
    targets = project_masks_on_boxes(masks, boxes, np.arange(len(boxes)), M)  # (G, M, M), as training
    pasted = paste_masks_in_image(targets[:, None], boxes, image_size)[:, 0] >= MASK_THRESHOLD  # (G, h, w)
    original = masks.astype(bool)
    inter = (pasted & original).sum(axis=(1, 2))
    union = (pasted | original).sum(axis=(1, 2))
    return np.where(original.any(axis=(1, 2)), inter / np.maximum(union, 1), np.nan)


def anchor_shape_iou(boxes, generator: AnchorGenerator) -> np.ndarray:
    """(G,) best IoU of any cell anchor (every level's shapes) centred on each box."""
    wh = boxes[:, 2:] - boxes[:, :2]  # (G, 2)
    centred = np.concatenate([-wh / 2, wh / 2], axis=1)  # (G, 4) centred on the origin, as the cell anchors
    return box_iou(centred, np.concatenate(generator.cell_anchors).astype(boxes.dtype)).max(axis=1)


# --- the dataset ---------------------------------------------------------------------------------
def suggest_anchors(widths, heights, config) -> tuple[tuple, tuple]:
    """``anchor_sizes`` and ``aspect_ratios`` from the objects' widths and heights (model coordinates; rule in
    the module docstring), shaped as ``config``'s: as many levels, sizes per level and ratios per level."""
    w, h = np.asarray(widths, dtype=np.float64), np.asarray(heights, dtype=np.float64)
    levels, per_level, R = len(config.anchor_sizes), len(config.anchor_sizes[0]), len(config.aspect_ratios[0])
    logs = np.log(h / w)
    centre = float(np.median(logs))
    q = np.quantile(logs, np.linspace(*RATIO_QUANTILES, R)) if R > 1 else np.array([centre])
    offsets = np.arange(R) - (R - 1) / 2  # (R,) steps from the median
    spread = np.sign(offsets) * np.maximum(np.abs(q - centre), np.abs(offsets) * math.log(MIN_RATIO_STEP))
    ratios = tuple(round(float(math.exp(centre + d)), 2) for d in spread)
    boxes = np.stack([-w / 2, -h / 2, w / 2, h / 2], axis=1)  # (G, 4) centred on the origin
    current = min(min(level) for level in config.anchor_sizes)
    best, best_score = None, None
    for k in range(-3 * PHASES, PHASES):  # three octaves below the smallest anchor, one above
        sizes = [max(int(round(current * 2 ** (k / PHASES + i))), 1) for i in range(levels * per_level)]
        fit = anchor_shape_iou(boxes, AnchorGenerator(sizes=[sizes], aspect_ratios=[ratios]))  # (G,)
        score = (int((fit >= config.rpn_fg_iou_thresh).sum()), -abs(k))  # most fits, then the least change
        if best_score is None or score > best_score:
            best, best_score = sizes, score
    sizes = tuple(tuple(best[k * per_level : (k + 1) * per_level]) for k in range(levels))
    return sizes, (ratios,) * levels


def anchor_statistics(views: list, config, progress: bool = False, desc: str = "anchors") -> dict:
    """Per object of every image in ``views`` (from :func:`model_view`): best IoU, level, positives,
    low-quality-only, unmatched and anchor-shape IoU, with ``config``'s anchors -> arrays (G_total,)."""
    generator = AnchorGenerator.from_config(config)
    matcher = Matcher(config.rpn_fg_iou_thresh, config.rpn_bg_iou_thresh, allow_low_quality_matches=True)
    parts = []
    with progress_bar(progress, total=len(views), desc=desc, unit="image") as bar:
        for view in views:
            if len(view["boxes"]):
                parts.append(anchor_match(view["boxes"], view["padded_size"], config, generator, matcher))
            bar.update()
    out = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in
           ("best_iou", "best_level", "positives")}
    boxes = np.concatenate([v["boxes"] for v in views]) if views else np.zeros((0, 4), np.float32)
    out["anchor_shape_iou"] = anchor_shape_iou(boxes, generator) if len(boxes) else np.zeros(0)
    out["low_quality_only"] = (out["best_iou"] < config.rpn_fg_iou_thresh) & (out["positives"] > 0)
    out["fg_iou_thresh"] = config.rpn_fg_iou_thresh
    out["unmatched"] = out["positives"] == 0
    return out


def inspect_data(dataset, config, progress: bool = False, suggest: bool = True) -> dict:
    """Every ground truth of ``dataset`` (a CocoDataset) as ``config``'s model sees it in training.

    Returns ``{"settings", "summary", "ground_truths", "suggestion"}`` (module docstring; JSON-ready: floats,
    ints, lists, None). ``ground_truths`` has one dict per object, in the dataset's order. ``progress``
    shows progress bars; ``suggest=False`` skips the suggested anchors."""
    config = as_config(config, "inspect_data")
    transform = GeneralizedRCNNTransform.from_config(config)
    M = mask_size(config)
    views, rows, mask_ious = [], [], []
    with progress_bar(progress, total=len(dataset), desc="inspect", unit="image") as bar:
        for i in range(len(dataset)):
            image, target = dataset[i]
            view = model_view(transform, image, target, config)
            views.append(view)
            boxes, G = view["boxes"], len(view["boxes"])
            levels = roi_levels(boxes, view["image_size"], view["padded_size"], config) if G else []
            if view["masks"] is not None:
                mask_ious.append(mask_round_trip(boxes, view["masks"], view["image_size"], M))
            image_id = target["image_id"]
            ann_ids = dataset.coco.getAnnIds(imgIds=[image_id], iscrowd=0)
            ann_ids = ann_ids if len(ann_ids) == G else [None] * G
            for g in range(G):
                w, h = (float(v) for v in boxes[g, 2:] - boxes[g, :2])
                rows.append({"image_id": int(image_id), "annotation_id": ann_ids[g], "label": int(target["labels"][g]),
                             "category": dataset.categories[int(target["labels"][g])],
                             "box_in_file": _floats(target["boxes"][g]), "box": _floats(boxes[g]),
                             "width": w, "height": h, "sqrt_area": math.sqrt(w * h), "aspect_ratio": h / w,
                             "roi_level": level_name(config, int(levels[g]))})
            bar.update()
    stats = anchor_statistics(views, config, progress, "anchors")
    finest = STRIDES[config.architecture][FEATURE_MAPS[config.architecture].index(config.roi_featmap_names[0])]
    smallest = min(min(s) for s in config.anchor_sizes)
    ious = np.concatenate(mask_ious) if mask_ious else None
    anchor_levels = [level_name(config, int(math.log2(s))) for s in STRIDES[config.architecture]]
    for g, row in enumerate(rows):
        row |= _anchor_row(stats, g, anchor_levels)
        row["too_small_for_stride"] = min(row["width"], row["height"]) < finest
        row["too_small_for_anchors"] = bool(stats["anchor_shape_iou"][g] < config.rpn_fg_iou_thresh
                                            and row["sqrt_area"] < smallest)
        row["mask_iou"] = None if ious is None or np.isnan(ious[g]) else float(ious[g])
    settings = {"architecture": config.architecture, "min_size": config.min_size, "max_size": config.max_size,
                "anchor_sizes": _lists(config.anchor_sizes), "aspect_ratios": _lists(config.aspect_ratios),
                "anchor_levels": anchor_levels, "rpn_fg_iou_thresh": config.rpn_fg_iou_thresh,
                "rpn_bg_iou_thresh": config.rpn_bg_iou_thresh, "roi_featmap_names": list(config.roi_featmap_names),
                "finest_roi_stride": finest, "mask_size": M if ious is not None else None}
    result = {"settings": settings, "summary": _summary(rows, stats, len(views), config, ious is not None),
              "ground_truths": rows, "suggestion": None}
    if suggest and rows:
        sizes, ratios = suggest_anchors([r["width"] for r in rows], [r["height"] for r in rows], config)
        after = anchor_statistics(views, replace(config, anchor_sizes=sizes, aspect_ratios=ratios), progress,
                                  "suggested anchors")
        for g, row in enumerate(rows):
            row["suggested"] = _anchor_row(after, g, anchor_levels)
        result["suggestion"] = {"anchor_sizes": _lists(sizes), "aspect_ratios": _lists(ratios),
                                "before": _anchor_summary(stats), "after": _anchor_summary(after)}
    return result


def _anchor_row(stats: dict, g: int, anchor_levels: list) -> dict:
    return {"best_anchor_iou": float(stats["best_iou"][g]), "best_anchor_level": anchor_levels[stats["best_level"][g]],
            "positives": int(stats["positives"][g]), "low_quality_only": bool(stats["low_quality_only"][g]),
            "unmatched": bool(stats["unmatched"][g]), "anchor_shape_iou": float(stats["anchor_shape_iou"][g])}


def _anchor_summary(stats: dict) -> dict:
    best = stats["best_iou"]
    return {"median_best_iou": _median(best), "low_quality_only": int(stats["low_quality_only"].sum()),
            "unmatched": int(stats["unmatched"].sum()), "median_positives": _median(stats["positives"]),
            "anchor_shape_fits": int((stats["anchor_shape_iou"] >= stats["fg_iou_thresh"]).sum())}


def _summary(rows: list, stats: dict, images: int, config, masks: bool) -> dict:
    best = stats["best_iou"]
    ious = np.array([r["mask_iou"] for r in rows if r["mask_iou"] is not None])
    return {"images": images, "ground_truths": len(rows),
            **_anchor_summary(stats),
            "best_iou_quantiles": {f"q{q}": _quantile(best, q / 100) for q in (5, 25, 50, 75, 95)},
            "fg_matched": int((best >= config.rpn_fg_iou_thresh).sum()),
            "best_anchor_levels": _histogram(r["best_anchor_level"] for r in rows),
            "roi_levels": _histogram(r["roi_level"] for r in rows),
            "too_small_for_stride": sum(r["too_small_for_stride"] for r in rows),
            "too_small_for_anchors": sum(r["too_small_for_anchors"] for r in rows),
            "mask_iou": None if not masks else {
                "median": _median(ious), "mean": float(ious.mean()) if len(ious) else None,
                "min": float(ious.min()) if len(ious) else None, "below_0.5": int((ious < 0.5).sum()),
                "below_0.8": int((ious < 0.8).sum()),
                "empty_after_resize": sum(r["mask_iou"] is None for r in rows)}}


def _histogram(names) -> dict:
    out = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: int(kv[0][1:])))


def _median(x):
    return _quantile(x, 0.5)


def _quantile(x, q):
    return float(np.quantile(np.asarray(x, dtype=np.float64), q)) if len(x) else None


def _floats(a) -> list:
    return [round(float(v), 3) for v in a]


def _lists(levels) -> list:
    return [list(level) for level in levels]


# --- the report: a terminal table, a JSON and figures ---------------------------------------------
def format_report(result: dict, worst: int = 8) -> str:
    """The summary of :func:`inspect_data`'s ``result`` (current anchors -> suggested) and its ``worst``
    objects by best anchor IoU and by mask round-trip IoU, as text."""
    st, s, sug = result["settings"], result["summary"], result["suggestion"]
    fg, bg = st["rpn_fg_iou_thresh"], st["rpn_bg_iou_thresh"]
    n = max(s["ground_truths"], 1)
    lines = [f"{s['images']} images, {s['ground_truths']} ground truths, in the model's coordinates (min_size "
             f"{st['min_size']}, max_size {st['max_size']}); RPN matcher: IoU >= {fg} positive, < {bg} negative, "
             f"each object's best anchors kept (low-quality rule)"]
    if not s["ground_truths"]:
        return "\n".join([*lines, "no ground truth to inspect"])
    table = [("", "current", "suggested" if sug else ""),
             ("anchor sizes", _sizes(st["anchor_sizes"]), _sizes(sug["anchor_sizes"]) if sug else ""),
             ("aspect ratios h/w", _sizes(st["aspect_ratios"][:1]), _sizes(sug["aspect_ratios"][:1]) if sug else "")]
    rows = (("median best anchor IoU", "median_best_iou", "{:.3f}"),
            ("matched only by the low-quality rule", "low_quality_only", "count"),
            ("not matched by any anchor", "unmatched", "count"),
            ("median positive anchors", "median_positives", "{:g}"),
            (f"an anchor shape fits at IoU >= {fg}", "anchor_shape_fits", "count"))
    for label, key, fmt in rows:
        cells = [s[key], sug["after"][key] if sug else None]
        table.append((label, *("" if v is None else f"{v} ({100 * v / n:.1f}%)" if fmt == "count" else fmt.format(v)
                               for v in cells)))
    width = max(len(r[0]) for r in table) + 2
    lines += [""] + [f"{a:<{width}}{b:<28}{c}".rstrip() for a, b, c in table] + [""]
    if sug:
        lines += [f"to train (or inspect) with the suggested anchors: {suggestion_flags(sug)}", ""]
    q = s["best_iou_quantiles"]
    lines.append("best anchor IoU, 5/25/50/75/95%: " + " / ".join(f"{v:.2f}" for v in q.values()))
    lines.append("level of the best anchor: " + _hist(s["best_anchor_levels"]))
    lines.append("RoI level (box and mask heads pool from): " + _hist(s["roi_levels"]))
    m = s["mask_iou"]
    if m is not None and m["median"] is not None:
        lines.append(f"mask round trip ({st['mask_size']}x{st['mask_size']} target pasted back, >= {MASK_THRESHOLD}):"
                     f" IoU median {m['median']:.3f}, mean {m['mean']:.3f}, min {m['min']:.3f}; {m['below_0.5']} below "
                     f"0.5, {m['below_0.8']} below 0.8" + (f", {m['empty_after_resize']} masks empty after resizing"
                                                            if m["empty_after_resize"] else ""))
    lines.append(f"smaller than the finest RoI stride (a side < {st['finest_roi_stride']} px): "
                 f"{s['too_small_for_stride']}")
    smallest = min(min(level) for level in st["anchor_sizes"])
    lines.append(f"smaller than the smallest anchor ({smallest} px) can match at IoU {fg}: "
                 f"{s['too_small_for_anchors']}")
    gts = result["ground_truths"]
    for title, key in (("by best anchor IoU", "best_anchor_iou"), ("by mask round-trip IoU", "mask_iou")):
        ranked = sorted((g for g in gts if g[key] is not None), key=lambda g, k=key: g[k])[:worst]
        if ranked:
            lines += ["", f"worst {len(ranked)} {title}", _WORST_HEADER] + [_worst_row(g) for g in ranked]
    return "\n".join(lines)


def with_suggested_anchors(config, suggestion: dict):
    """``config`` with the anchors of ``suggestion`` (``inspect_data(...)["suggestion"]``, or its JSON):
    what ``mrcnn-np train`` builds from :func:`suggestion_flags`."""
    if not isinstance(suggestion, dict) or not {"anchor_sizes", "aspect_ratios"} <= suggestion.keys():
        raise TypeError("with_suggested_anchors: suggestion must be inspect_data(...)['suggestion'], a dict with "
                        f"anchor_sizes and aspect_ratios, got {type(suggestion).__name__}")
    return replace(config, anchor_sizes=tuple(map(tuple, suggestion["anchor_sizes"])),
                   aspect_ratios=tuple(map(tuple, suggestion["aspect_ratios"])))


def suggestion_flags(suggestion: dict) -> str:
    """The suggested anchors as the options of ``mrcnn-np train`` and ``inspect-data``: ``--anchor-sizes`` (one
    per FPN level, or the C4 level's sizes) and ``--aspect-ratios`` (the same on every level)."""
    sizes = [v for level in suggestion["anchor_sizes"] for v in level]
    return (f"--anchor-sizes {' '.join(f'{v:g}' for v in sizes)} "
            f"--aspect-ratios {' '.join(f'{v:g}' for v in suggestion['aspect_ratios'][0])}")


_WORST_HEADER = (f"{'image':>7} {'ann':>7} {'category':<12} {'w x h':>11} {'sqrt':>6} {'h/w':>5} {'best IoU':>8} "
                 f"{'level':>5} {'pos':>4} {'matched':<11} {'RoI':>4} {'mask IoU':>8}")


def _worst_row(g: dict) -> str:
    matched = "none" if g["unmatched"] else "low-quality" if g["low_quality_only"] else "fg"
    mask = "-" if g["mask_iou"] is None else f"{g['mask_iou']:.3f}"
    return (f"{g['image_id']:>7} {str(g['annotation_id']):>7} {g['category'][:12]:<12} "
            f"{g['width']:>5.1f}x{g['height']:<5.1f} {g['sqrt_area']:>6.1f} {g['aspect_ratio']:>5.2f} "
            f"{g['best_anchor_iou']:>8.3f} {g['best_anchor_level']:>5} {g['positives']:>4} {matched:<11} "
            f"{g['roi_level']:>4} {mask:>8}")


def _sizes(levels) -> str:
    return ", ".join("/".join(f"{v:g}" for v in level) for level in levels)


def _hist(h: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in h.items())


def save_report(result: dict, out_dir) -> dict:
    """``out_dir/inspect.json`` (the whole ``result``) and the figures -> {name: path}."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "inspect.json"}
    files["json"].write_text(json.dumps(result, indent=1), encoding="utf-8")
    for name, figure in plot_inspection(result).items():
        files[name] = out / f"{name}.png"
        figure.savefig(files[name], dpi=100)
    return {k: str(v) for k, v in files.items()}


def plot_inspection(result: dict) -> dict:
    """:func:`inspect_data`'s ``result`` as matplotlib Figures (object API, rendered by Agg): ``best_anchor_iou``
    (histogram, the fg and bg thresholds drawn), ``levels`` (RoI and best-anchor levels), ``mask_iou``
    (when the objects have masks) and ``anchors`` (sqrt(w h) against h / w, current and suggested anchors)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    st, sug, gts = result["settings"], result["suggestion"], result["ground_truths"]
    figures = {}
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    ax.hist([g["best_anchor_iou"] for g in gts], bins, color="#0072B2", alpha=0.8, label="current anchors")
    if sug:
        ax.hist([g["suggested"]["best_anchor_iou"] for g in gts], bins, histtype="step", lw=2, color="#D55E00",
                label="suggested anchors")
    for t, name in ((st["rpn_fg_iou_thresh"], "fg"), (st["rpn_bg_iou_thresh"], "bg")):
        ax.axvline(t, color="black", ls="--", lw=1)
        ax.text(t, 1, f" {name} {t}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    ax.set(xlabel="best anchor IoU of each ground truth", ylabel="ground truths", xlim=(0, 1))
    ax.legend(fontsize=8, loc="upper left")
    figures["best_anchor_iou"] = fig

    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.subplots()
    hists = {"RoI level (box/mask heads)": result["summary"]["roi_levels"],
             "best anchor level (RPN)": result["summary"]["best_anchor_levels"]}
    names = sorted({k for h in hists.values() for k in h}, key=lambda k: int(k[1:]))
    x = np.arange(len(names))
    for i, (label, h) in enumerate(hists.items()):
        ax.bar(x + (i - 0.5) * 0.4, [h.get(k, 0) for k in names], 0.4, label=label)
    ax.set_xticks(x, names)
    ax.set(xlabel="feature map", ylabel="ground truths")
    ax.legend(fontsize=8)
    figures["levels"] = fig

    ious = [g["mask_iou"] for g in gts if g["mask_iou"] is not None]
    if st["mask_size"] is not None:
        fig = Figure(figsize=(6, 3.4), layout="constrained")
        ax = fig.subplots()
        ax.hist(ious, np.linspace(0, 1, 41), color="#009E73")
        ax.set(xlabel=f"IoU of the mask with its {st['mask_size']}x{st['mask_size']} target pasted back",
               ylabel="ground truths", xlim=(0, 1))
        figures["mask_iou"] = fig

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    kinds = (("fg-matched", "#56B4E9", lambda g: not g["low_quality_only"] and not g["unmatched"]),
             ("low-quality rule only", "#E69F00", lambda g: g["low_quality_only"]),
             ("unmatched", "#CC0000", lambda g: g["unmatched"]))
    for label, colour, keep in kinds:
        sel = [g for g in gts if keep(g)]
        ax.scatter([g["sqrt_area"] for g in sel], [g["aspect_ratio"] for g in sel], s=10, color=colour,
                   alpha=0.7, label=f"{label} ({len(sel)})")
    anchors = [("current anchors", st["anchor_sizes"], st["aspect_ratios"], "x", "black")]
    if sug:
        anchors.append(("suggested anchors", sug["anchor_sizes"], sug["aspect_ratios"], "+", "#D55E00"))
    for label, sizes, ratios, marker, colour in anchors:
        cells = np.concatenate([AnchorGenerator(sizes=[s], aspect_ratios=[r]).cell_anchors[0]
                                for s, r in zip(sizes, ratios, strict=True)])  # (A, 4) the rounded shapes
        w, h = cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]
        ax.scatter(np.sqrt(w * h), h / w, marker=marker, s=70, color=colour, label=label)
    ax.set(xscale="log", yscale="log", xlabel="sqrt(w h), px (model coordinates)", ylabel="aspect ratio h / w")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers on the log axes
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7)
    figures["anchors"] = fig
    return figures
