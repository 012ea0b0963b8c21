"""COCO-format instance-segmentation datasets: an annotation file and its images -> training samples.

In:  a COCO annotation file (or a dict in the same layout): ``images`` (``id``, ``file_name``,
     ``height``, ``width``), ``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox``
     ``[x, y, w, h]``, ``segmentation`` as polygons or RLE, ``iscrowd``, ``area``) and
     ``categories`` (``id``, ``name``); the images on disk (anything PIL reads), or in memory as
     ``{image_id: uint8 (H, W, 3)}``.
Out: ``dataset[i]`` -> ``(image, target)``: ``image`` uint8 (H, W, 3) and ``target``
     ``{"boxes": float32 (G, 4) xyxy, "labels": int64 (G,), "masks": uint8 (G, H, W),
     "image_id": int}``, the layout torchvision's detection models train on; ``dataset.coco``,
     the cleaned ground truth as a pycocotools ``COCO`` object for ``COCOeval``. Batches and
     flips: :mod:`mrcnn_np.data.loader`.

Labels are contiguous, ``1..K`` in the order of sorted category id; 0 is the background
(``dataset.categories[label]`` is the name, ``dataset.category_ids[label]`` the COCO id).
As in torchvision's ``references/detection/coco_utils.py`` (``ConvertCocoPolysToMask``),
boxes come from ``bbox`` (clipped to the image), masks are rasterised with pycocotools, and
crowd annotations (``iscrowd=1``) stay out of the training targets; they do stay in
``dataset.coco``, where ``COCOeval`` treats them as regions to ignore. Images without
objects are kept: they are negatives (G = 0).

Everything wrong in a file is found when the dataset is built, never halfway through
training: each finding is a :class:`DatasetProblem` in ``dataset.problems`` saying what was
done about it (annotation skipped, box clipped, image skipped ...), and one
:class:`DatasetWarning` sums them up; ``strict=True`` raises :class:`DatasetError` instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from ..checks import is_int, is_number

SKIPPED = "annotation skipped"


class DatasetProblem(NamedTuple):
    """One thing wrong in an annotation file, and what was done about it."""

    file: str  # the annotation file ("<memory>" for an in-memory dict)
    annotation_id: int | None
    image_id: int | None
    message: str  # what is wrong, e.g. "polygon with 2 points"
    action: str  # what was done, e.g. "annotation skipped", "box clipped to the image", "image skipped"

    def __str__(self) -> str:
        where = [self.file]
        if self.annotation_id is not None:
            where.append(f"annotation {self.annotation_id}" if self.image_id is None
                         else f"annotation {self.annotation_id} (image {self.image_id})")
        elif self.image_id is not None:
            where.append(f"image {self.image_id}")
        return f"{': '.join(where)}: {self.message}; {self.action}"


class DatasetError(ValueError):
    """An annotation file that cannot be used, or any problem in ``strict`` mode."""


class DatasetWarning(UserWarning):
    """Problems were found in an annotation file and worked around (see ``dataset.problems``)."""


def format_problems(problems, limit: int | None = None) -> str:
    """One line per problem; with ``limit``, the first ``limit`` and a count of the rest."""
    problems = list(problems)
    shown = problems if limit is None else problems[:limit]
    lines = [f"  {p}" for p in shown]
    if len(problems) > len(shown):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    return "\n".join(lines)


class CocoDataset:
    """A COCO-format instance-segmentation dataset: ``dataset[i]`` -> ``(image, target)``.

    ``annotations``: a path to a COCO JSON file, or a dict in COCO layout. ``image_dir``: the
    folder the images' ``file_name`` are relative to (default: the JSON file's folder, and
    ``<that folder>/images/`` for files not found there; the working directory for a dict).
    ``images``: ``{image_id: uint8 (H, W, 3)}`` for in-memory datasets (then no file is read).
    ``strict``: raise :class:`DatasetError` on any problem instead of working around it.
    ``name``: what problems and errors call the file (default: its path, or ``"<memory>"``).

    Attributes: ``problems`` (list of :class:`DatasetProblem`), ``coco`` (the cleaned ground
    truth, crowd annotations included), ``categories`` (label -> name, ``[0]`` is
    ``"background"``), ``category_ids`` (label -> COCO id, ``[0]`` is 0), ``image_ids`` (the
    kept images in file order), ``file``.
    """

    def __init__(self, annotations, image_dir=None, images: Mapping | None = None, *,
                 strict: bool = False, name: str | None = None):
        if isinstance(annotations, (str, Path)):
            path = Path(annotations)
            self.file = str(path) if name is None else str(name)
            data = _read_json(path, self.file)
            search = [Path(image_dir)] if image_dir is not None else [path.parent, path.parent / "images"]
        elif isinstance(annotations, Mapping):
            self.file = "<memory>" if name is None else str(name)
            data = annotations
            search = [Path(image_dir) if image_dir is not None else Path.cwd()]
        else:
            raise TypeError(f"CocoDataset: annotations must be a path or a dict in COCO layout, "
                            f"got {type(annotations).__name__}")
        self.problems: list[DatasetProblem] = []
        self._search = search
        if images is not None and not isinstance(images, Mapping):
            raise TypeError(f"CocoDataset: images must be a mapping image_id -> array, got {type(images).__name__}")
        self._arrays = None
        if images is not None:
            self._arrays = {self._check_key(k): self._check_array(k, v) for k, v in images.items()}

        raw_images, raw_annotations, raw_categories = self._top_level(data)
        self.category_ids = [0] + sorted(c["id"] for c in raw_categories)
        label_of = {cid: label for label, cid in enumerate(self.category_ids) if label > 0}
        names = {c["id"]: str(c.get("name", c["id"])) for c in raw_categories}
        self.categories = ["background"] + [names[cid] for cid in self.category_ids[1:]]

        if not raw_annotations:
            self._problem(None, None, "the annotation list is empty: every image is a negative",
                          "images kept without objects")
        all_ids = {e["id"] for e in raw_images if isinstance(e, Mapping) and is_int(e.get("id"))}
        kept = self._check_images(raw_images)  # image_id -> cleaned entry (height, width filled in)
        self.image_ids = list(kept)
        self._paths = {i: e.get("_path") for i, e in kept.items()}
        self._sizes = {i: (e["height"], e["width"]) for i, e in kept.items()}
        self._targets = {i: ([], [], []) for i in kept}  # image_id -> (boxes xyxy, labels, RLEs)
        cleaned = self._check_annotations(raw_annotations, all_ids, label_of)

        self.coco = COCO()
        self.coco.dataset = {key: data[key] for key in ("info", "licenses") if key in data}
        self.coco.dataset |= {"images": [{k: v for k, v in e.items() if k != "_path"} for e in kept.values()],
                              "annotations": cleaned, "categories": [dict(c) for c in raw_categories]}
        with contextlib.redirect_stdout(io.StringIO()):  # COCO prints "creating index..."
            self.coco.createIndex()

        if self.problems and strict:
            raise DatasetError(f"{self.file}: {len(self.problems)} problem(s) (strict=True):\n"
                               + format_problems(self.problems))
        if self.problems:
            warnings.warn(DatasetWarning(
                f"{self.file}: {len(self.problems)} problem(s) in the annotations, worked around:\n"
                f"{format_problems(self.problems, limit=10)}\n"
                "the full list is in the dataset's .problems"), stacklevel=2)

    # --- samples ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i) -> tuple[np.ndarray, dict]:
        """Sample ``i`` -> image uint8 (H, W, 3), target {boxes (G, 4), labels (G,), masks (G, H, W), image_id}."""
        if not is_int(i):
            raise TypeError(f"CocoDataset indices must be integers, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"CocoDataset index {i} out of range for {len(self)} images")
        image_id = self.image_ids[int(i)]
        image = self._load_image(image_id)
        boxes, labels, rles = self._targets[image_id]
        h, w = self._sizes[image_id]
        if rles:
            with warnings.catch_warnings():  # pycocotools' decoder predates NumPy 2's __array__(copy=)
                warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
                masks = mask_utils.decode(rles)  # (H, W, G)
            masks = np.ascontiguousarray(masks.transpose(2, 0, 1))  # (H, W, G) -> (G, H, W)
        else:
            masks = np.zeros((0, h, w), dtype=np.uint8)
        target = {"boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),  # (G, 4)
                  "labels": np.asarray(labels, dtype=np.int64).reshape(-1),  # (G,)
                  "masks": masks, "image_id": int(image_id)}
        return image, target

    def image(self, i) -> np.ndarray:
        """Only the image of sample ``i``: uint8 (H, W, 3) (no masks decoded)."""
        return self._load_image(self.image_ids[int(i)])

    def __repr__(self) -> str:
        return (f"CocoDataset({self.file!r}: {len(self)} images, {len(self.categories) - 1} categories, "
                f"{len(self.problems)} problems)")

    def _load_image(self, image_id: int) -> np.ndarray:
        if self._arrays is not None:
            return self._arrays[image_id].copy()
        path = self._paths[image_id]
        try:
            image = read_image(path)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{self.file}: image {image_id}: cannot read {path}: {e}") from e
        if image.shape[:2] != self._sizes[image_id]:
            raise DatasetError(f"{self.file}: image {image_id}: {path} is {image.shape[0]}x{image.shape[1]}, "
                               f"expected {self._sizes[image_id][0]}x{self._sizes[image_id][1]}")
        return image

    # --- validation at construction --------------------------------------------------------
    def _problem(self, annotation_id, image_id, message: str, action: str) -> None:
        self.problems.append(DatasetProblem(self.file, annotation_id, image_id, message, action))

    def _check_key(self, image_id) -> int:
        if not is_int(image_id):
            raise DatasetError(f"{self.file}: the keys of `images` must be integer image ids, got {image_id!r}")
        return int(image_id)

    def _check_array(self, image_id, array) -> np.ndarray:
        """An in-memory image -> uint8 (H, W, 3); grey (H, W) is repeated, a 4th (alpha) channel dropped."""
        a = np.asarray(array)
        if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
            raise DatasetError(f"{self.file}: images[{image_id}] must be a uint8 array (H, W, 3), "
                               f"got {a.dtype} {a.shape}")
        if a.ndim == 2:
            return np.repeat(a[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
        return np.ascontiguousarray(a[:, :, :3])

    def _top_level(self, data) -> tuple[list, list, list]:
        """The images, annotations and categories lists; DatasetError when the file is unusable."""
        if not isinstance(data, Mapping):
            raise DatasetError(f"{self.file}: expected a JSON object with 'images', 'annotations' and "
                               f"'categories', got {type(data).__name__}")
        if not isinstance(data.get("images"), list):
            raise DatasetError(f"{self.file}: no 'images' list")
        categories = data.get("categories")
        if not isinstance(categories, list):
            raise DatasetError(f"{self.file}: no 'categories' list")
        if not categories:
            raise DatasetError(f"{self.file}: the 'categories' list is empty")
        seen = set()
        for k, c in enumerate(categories):
            if not isinstance(c, Mapping) or not is_int(c.get("id")):
                raise DatasetError(f"{self.file}: category entry {k} has no integer 'id': {_short(c)}")
            if c["id"] in seen:
                raise DatasetError(f"{self.file}: category id {c['id']} appears twice")
            seen.add(c["id"])
        annotations = data.get("annotations")
        if annotations is None:
            annotations = []
        if not isinstance(annotations, list):
            raise DatasetError(f"{self.file}: 'annotations' must be a list, got {type(annotations).__name__}")
        return data["images"], annotations, categories

    def _check_images(self, raw_images: list) -> dict:
        """Image entries -> {image_id: cleaned entry}, skipping those without a usable image."""
        kept = {}
        for k, entry in enumerate(raw_images):
            if not isinstance(entry, Mapping) or not is_int(entry.get("id")):
                self._problem(None, None, f"image entry {k} has no integer 'id': {_short(entry)}", "image skipped")
                continue
            image_id = int(entry["id"])
            if image_id in kept:
                self._problem(None, image_id, "duplicate image id", "image skipped")
                continue
            entry = dict(entry)
            if self._arrays is not None:
                if image_id not in self._arrays:
                    self._problem(None, image_id, "no array for it in `images`", "image skipped")
                    continue
                h, w = self._arrays[image_id].shape[:2]
            else:
                name = entry.get("file_name")
                if not isinstance(name, str) or not name:
                    self._problem(None, image_id, "no 'file_name'", "image skipped")
                    continue
                path = next((d / name for d in self._search if (d / name).is_file()), None)
                if path is None:
                    where = " or ".join(str(d) for d in self._search)
                    self._problem(None, image_id, f"image file {name!r} not found in {where}", "image skipped")
                    continue
                try:
                    with Image.open(path) as im:  # reads the header only
                        w, h = im.size
                except (OSError, ValueError) as e:
                    self._problem(None, image_id, f"cannot read image file {path}: {e}", "image skipped")
                    continue
                entry["_path"] = path
            said = (entry.get("height"), entry.get("width"))
            if said != (None, None) and said != (h, w):
                self._problem(None, image_id, f"the image is {h}x{w} but the file says {said[0]}x{said[1]}",
                              "image skipped")
                continue
            entry["height"], entry["width"] = int(h), int(w)
            kept[image_id] = entry
        return kept

    def _check_annotations(self, raw_annotations: list, all_ids: set, label_of: dict) -> list[dict]:
        """Annotations -> the cleaned ones (for ``coco``); fills ``_targets`` with the non-crowd ones."""
        cleaned, seen = [], set()
        for k, ann in enumerate(raw_annotations):
            if not isinstance(ann, Mapping):
                self._problem(None, None, f"annotation entry {k} is not an object: {_short(ann)}", SKIPPED)
                continue
            aid, image_id = ann.get("id"), ann.get("image_id")
            image_id = image_id if is_int(image_id) else None
            if not is_int(aid):
                self._problem(None, image_id, f"annotation entry {k} has no integer 'id'", SKIPPED)
                continue
            if aid in seen:
                self._problem(aid, image_id, "duplicate annotation id", SKIPPED)
                continue
            seen.add(aid)
            if image_id is None:
                self._problem(aid, None, f"no integer 'image_id' ({_short(ann.get('image_id'))})", SKIPPED)
                continue
            if image_id not in all_ids:
                self._problem(aid, image_id, f"refers to image {image_id}, which is not in the file", SKIPPED)
                continue
            if image_id not in self._sizes:
                continue  # its image was skipped, and that is one problem already
            category = ann.get("category_id")
            if not is_int(category) or category not in label_of:
                self._problem(aid, image_id, f"unknown category_id {_short(category)}", SKIPPED)
                continue
            h, w = self._sizes[image_id]
            findings = []
            rle, segmentation = _rasterise(ann.get("segmentation"), h, w, findings)
            box = None if rle is None else _clip_box(ann.get("bbox"), rle, h, w, findings)
            for message, action in findings:
                self._problem(aid, image_id, message, action)
            if box is None:
                continue
            area = ann.get("area")
            if not (is_number(area) and math.isfinite(area) and area > 0):
                area = float(mask_utils.area(rle))
            crowd = int(bool(ann.get("iscrowd", 0)))
            cleaned.append(dict(ann) | {"bbox": box, "segmentation": segmentation, "area": area, "iscrowd": crowd})
            if not crowd:
                boxes, labels, rles = self._targets[image_id]
                boxes.append([box[0], box[1], box[0] + box[2], box[1] + box[3]])  # xywh -> xyxy
                labels.append(label_of[category])
                rles.append(rle)
        return cleaned


# --- helpers -------------------------------------------------------------------------------
def read_image(path) -> np.ndarray:
    """An image file (PNG, JPEG, ...) -> uint8 (H, W, 3) RGB (grey is repeated, alpha dropped)."""
    with Image.open(path) as im:
        return np.array(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)  # (H, W, 3)


def _read_json(path: Path, file: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{file}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{file}: not a JSON file ({e})") from None
    except OSError as e:
        raise DatasetError(f"{file}: cannot read the annotation file ({e})") from None


def _short(x, limit: int = 60) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rasterise(segmentation, h: int, w: int, findings: list) -> tuple[dict | None, object]:
    """A COCO segmentation -> (pycocotools RLE, cleaned segmentation), or (None, None) when unusable.

    Appends ``(message, action)`` to ``findings``: polygon parts with fewer than 3 points are
    dropped; an RLE must have the image's size and counts covering it exactly; the mask must
    not be empty.
    """
    if segmentation is None:
        findings.append(("no segmentation", SKIPPED))
        return None, None
    if isinstance(segmentation, list):
        if not segmentation:
            findings.append(("empty polygon list", SKIPPED))
            return None, None
        parts, bad = [], []
        for part in segmentation:
            if not isinstance(part, (list, tuple)) or not all(is_number(v) for v in part):
                bad.append(f"polygon that is not a list of numbers ({_short(part, 30)})")
            elif not all(math.isfinite(v) for v in part):
                bad.append("polygon with NaN or inf coordinates")
            elif len(part) % 2:
                bad.append(f"polygon with an odd number of coordinates ({len(part)})")
            elif len(part) < 6:
                bad.append(f"polygon with {len(part) // 2} point{'' if len(part) == 2 else 's'}")
            else:
                parts.append([float(v) for v in part])
        if not parts:
            findings.append(("; ".join(bad), SKIPPED))
            return None, None
        if bad:
            findings.append(("; ".join(bad), f"{len(bad)} polygon part{'s' if len(bad) > 1 else ''} dropped"))
        rle = mask_utils.merge(mask_utils.frPyObjects(parts, h, w))
        segmentation = parts
    elif isinstance(segmentation, Mapping):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(s) for s in size)):
            findings.append((f"RLE without a valid 'size' ({_short(size, 30)})", SKIPPED))
            return None, None
        if tuple(size) != (h, w):
            findings.append((f"RLE size {size[0]}x{size[1]} differs from the image's {h}x{w}", SKIPPED))
            return None, None
        if isinstance(counts, list):
            total = sum(counts) if all(is_int(c) and c >= 0 for c in counts) else None
        elif isinstance(counts, (str, bytes)):
            total = _compressed_rle_total(counts)
        else:
            findings.append((f"RLE counts must be a list or a string, got {type(counts).__name__}", SKIPPED))
            return None, None
        if total is None:
            findings.append(("malformed RLE counts", SKIPPED))
            return None, None
        if total != h * w:
            findings.append((f"RLE counts cover {total} pixels, not {h}x{w} = {h * w}", SKIPPED))
            return None, None
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
            segmentation = {"size": [h, w], "counts": [int(c) for c in counts]}
        else:
            text = counts.decode("ascii") if isinstance(counts, bytes) else counts
            rle = {"size": [h, w], "counts": text.encode("ascii")}
            segmentation = {"size": [h, w], "counts": text}
    else:
        findings.append((f"unsupported segmentation ({type(segmentation).__name__})", SKIPPED))
        return None, None
    if mask_utils.area(rle) == 0:
        findings.append(("the mask is empty", SKIPPED))
        return None, None
    return rle, segmentation


def _compressed_rle_total(counts) -> int | None:
    """Sum of the run lengths in a compressed RLE string (pycocotools' ``rleFrString``); None if malformed.

    Each run is a little-endian sequence of 6-bit characters (``chr(48 + bits)``): 5 value
    bits and a continuation bit, the last one sign-extended; from the third run on, the
    value is the difference to the run two before.
    """
    try:
        data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    except UnicodeEncodeError:
        return None
    runs, p = [], 0
    while p < len(data):
        x = k = 0
        more = True
        while more:
            if p >= len(data):
                return None
            c = data[p] - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return sum(runs)


def _clip_box(bbox, rle: dict, h: int, w: int, findings: list) -> list[float] | None:
    """An annotation's ``bbox`` [x, y, w, h] -> clipped to the image, or None when unusable.

    A missing ``bbox`` is computed from the mask. Appends ``(message, action)`` to ``findings``.
    """
    if bbox is None:
        findings.append(("no bbox", "box computed from the mask"))
        return [float(v) for v in mask_utils.toBbox(rle)]
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        findings.append((f"bbox must be 4 numbers [x, y, w, h], got {_short(bbox, 40)}", SKIPPED))
        return None
    x, y, bw, bh = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, bw, bh)):
        findings.append((f"bbox with NaN or inf {[x, y, bw, bh]}", SKIPPED))
        return None
    if bw <= 0 or bh <= 0:
        findings.append((f"empty bbox (width {bw:g}, height {bh:g})", SKIPPED))
        return None
    x0, y0, x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h), min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
    if x1 <= x0 or y1 <= y0:
        findings.append(("box entirely outside the image", SKIPPED))
        return None
    if (x0, y0, x1, y1) != (x, y, x + bw, y + bh):
        findings.append(("box outside the image", "box clipped to the image"))
    return [x0, y0, x1 - x0, y1 - y0]
