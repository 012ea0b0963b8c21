"""COCO-format instance-segmentation (and detection) datasets: an annotation file and its images -> training samples.

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
     With ``masks=False`` (a detection dataset, for Faster R-CNN) an annotation needs only its
     ``bbox``; ``segmentation`` is ignored (neither read nor checked), the targets have no
     ``"masks"`` and ``dataset.coco`` has no ``segmentation`` (bbox evaluation only).

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
Every image file is decoded once at build time, so a truncated file is found then
(``verify_images=False`` reads only the headers).

An annotation file is untrusted input: nothing in it reaches pycocotools (C code that trusts
its input) unchecked. JSON types are checked (``"iscrowd": "0"`` or ``"height": "480"`` is a
problem, not a truthy string; ``true`` is not an id), and so is the work a polygon asks for:
each polygon point must lie within one image size of the image (``-W <= x <= 2W``,
``-H <= y <= 2H``; a mask is clipped to the image anyway), an annotation may have at most
:data:`MAX_POLYGON_PARTS` polygon parts, and their outline at most ``4 (H + 1) (W + 1)``
pixels long (a comb of 1-pixel teeth over the whole image is about ``H W``); pycocotools'
work is proportional to that length. An RLE must have the image's size and run lengths that
cover it exactly.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import reprlib
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
IMAGE_SKIPPED = "image skipped"
MAX_POLYGON_PARTS = 1000  # per annotation; pycocotools merges the parts one after the other


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
    ``verify_images``: decode every image file once now (with :func:`read_image`, as training
    will), so a truncated or unreadable file is an "image skipped" problem now rather than an
    error mid-training; ``False`` reads only the headers (faster for large datasets).
    ``masks``: ``False`` for a detection dataset (boxes only): ``segmentation`` is ignored, an
    annotation without a usable ``bbox`` is skipped, targets are ``{boxes, labels, image_id}``
    and a missing or invalid ``area`` is the clipped box's ``w * h``.

    A file with no usable image left (none listed, every file missing ...) raises
    :class:`DatasetError` ``"no usable image"``, listing the problems: there is nothing to
    train on or evaluate. Images without annotations are fine (negatives).

    Attributes: ``problems`` (list of :class:`DatasetProblem`), ``coco`` (the cleaned ground
    truth, crowd annotations included), ``categories`` (label -> name, ``[0]`` is
    ``"background"``), ``category_ids`` (label -> COCO id, ``[0]`` is 0), ``image_ids`` (the
    kept images in file order), ``file``.
    """

    def __init__(self, annotations, image_dir=None, images: Mapping | None = None, *,
                 strict: bool = False, name: str | None = None, verify_images: bool = True,
                 masks: bool = True):
        _check_flag("strict", strict)
        _check_flag("verify_images", verify_images)
        _check_flag("masks", masks)
        self._masks = bool(masks)
        for arg, value in (("image_dir", image_dir), ("name", name)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"CocoDataset: {arg} must be a str or path, got {type(value).__name__}")
        if isinstance(annotations, (str, os.PathLike)):
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
        self._search, self._verify = search, bool(verify_images)
        if images is not None and not isinstance(images, Mapping):
            raise TypeError(f"CocoDataset: images must be a mapping image_id -> array, got {type(images).__name__}")
        self._arrays = None
        if images is not None:
            self._arrays = {self._check_key(k): self._check_array(k, v) for k, v in images.items()}
        elif image_dir is not None and not _is(Path(image_dir), "dir"):
            raise DatasetError(f"{self.file}: image_dir {str(image_dir)!r} is not a folder")

        raw_images, raw_annotations, raw_categories = self._top_level(data)
        self.category_ids = [0] + sorted(c["id"] for c in raw_categories)
        label_of = {cid: label for label, cid in enumerate(self.category_ids) if label > 0}
        names = self._category_names(raw_categories)
        self.categories = ["background"] + [names[cid] for cid in self.category_ids[1:]]

        if not raw_annotations:
            self._problem(None, None, "the annotation list is empty: every image is a negative",
                          "images kept without objects")
        all_ids = {e["id"] for e in raw_images if isinstance(e, Mapping) and is_int(e.get("id"))}
        kept = self._check_images(raw_images)  # image_id -> cleaned entry (height, width filled in)
        if not kept:
            why = "the 'images' list is empty" if not raw_images else f"all {len(raw_images)} skipped"
            raise DatasetError(f"{self.file}: no usable image ({why}), nothing to train on or evaluate"
                               + (f":\n{format_problems(self.problems, limit=10)}" if self.problems else ""))
        self.image_ids = list(kept)
        self._paths = {i: e.get("_path") for i, e in kept.items()}
        self._sizes = {i: (e["height"], e["width"]) for i, e in kept.items()}
        self._targets = {i: ([], [], []) for i in kept}  # image_id -> (boxes xyxy, labels, RLEs or None)
        cleaned = self._check_annotations(raw_annotations, all_ids, label_of)

        self.coco = COCO()
        self.coco.dataset = {key: data[key] for key in ("info", "licenses") if key in data}
        self.coco.dataset |= {"images": [{k: v for k, v in e.items() if k != "_path"} for e in kept.values()],
                              "annotations": cleaned,
                              "categories": [dict(c) | {"name": names[c["id"]]} for c in raw_categories]}
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
        """Sample ``i`` -> image uint8 (H, W, 3), target {boxes (G, 4), labels (G,), masks (G, H, W), image_id}
        (no ``masks`` with ``masks=False``)."""
        image_id = self.image_ids[self._index(i)]
        image = self._load_image(image_id)
        boxes, labels, rles = self._targets[image_id]
        h, w = self._sizes[image_id]
        target = {"boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),  # (G, 4)
                  "labels": np.asarray(labels, dtype=np.int64).reshape(-1)}  # (G,)
        if not self._masks:
            return image, target | {"image_id": int(image_id)}
        if rles:
            with warnings.catch_warnings():  # pycocotools' decoder predates NumPy 2's __array__(copy=)
                warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
                masks = mask_utils.decode(rles)  # (H, W, G)
            masks = np.ascontiguousarray(masks.transpose(2, 0, 1))  # (H, W, G) -> (G, H, W)
        else:
            masks = np.zeros((0, h, w), dtype=np.uint8)
        return image, target | {"masks": masks, "image_id": int(image_id)}

    def image(self, i) -> np.ndarray:
        """Only the image of sample ``i``: uint8 (H, W, 3) (no masks decoded)."""
        return self._load_image(self.image_ids[self._index(i)])

    def __repr__(self) -> str:
        return (f"CocoDataset({self.file!r}: {len(self)} images, {len(self.categories) - 1} categories, "
                f"{len(self.problems)} problems)")

    def _index(self, i) -> int:
        """A sample index: an integer (NumPy's too, not a bool) in ``[-len, len)``."""
        if not is_int(i):
            raise TypeError(f"CocoDataset: index must be an integer, got {type(i).__name__}")
        if not -len(self) <= i < len(self):
            raise IndexError(f"CocoDataset: index {i} out of range for {len(self)} images")
        return int(i)

    def _load_image(self, image_id: int) -> np.ndarray:
        if self._arrays is not None:
            return self._arrays[image_id].copy()
        path = self._paths[image_id]
        try:
            image = read_image(path)
        except (OSError, ValueError) as e:  # the file changed since the dataset was built
            raise DatasetError(f"{self.file}: image {image_id}: {e}") from e
        if image.shape[:2] != self._sizes[image_id]:
            raise DatasetError(f"{self.file}: image {image_id}: {path} is {image.shape[0]}x{image.shape[1]}, "
                               f"expected {self._sizes[image_id][0]}x{self._sizes[image_id][1]}")
        return image

    # --- validation at construction --------------------------------------------------------
    def _problem(self, annotation_id, image_id, message: str, action: str) -> None:
        self.problems.append(DatasetProblem(self.file, annotation_id, image_id, message, action))

    def _check_key(self, image_id) -> int:
        if not is_int(image_id):
            raise DatasetError(f"{self.file}: the keys of `images` must be integer image ids, got {_short(image_id)}")
        return int(image_id)

    def _check_array(self, image_id, array) -> np.ndarray:
        """An in-memory image -> uint8 (H, W, 3); grey (H, W) is repeated, a 4th (alpha) channel dropped."""
        a = np.asarray(array)
        if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
            raise DatasetError(f"{self.file}: images[{image_id}] must be a uint8 array (H, W, 3), "
                               f"got {a.dtype} {a.shape}")
        if 0 in a.shape:
            raise DatasetError(f"{self.file}: images[{image_id}] is empty, shape {a.shape}")
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

    def _category_names(self, raw_categories: list) -> dict:
        """Category id -> name; a missing name is the id, a name that is not a string a problem."""
        names = {}
        for c in raw_categories:
            name = c.get("name", str(c["id"]))
            if not isinstance(name, str) or not name:
                self._problem(None, None, f"category {c['id']}: 'name' must be a non-empty string, "
                                          f"got {_short(name)}", "its id used as the name")
                name = str(c["id"])
            names[c["id"]] = name
        return names

    def _check_images(self, raw_images: list) -> dict:
        """Image entries -> {image_id: cleaned entry}, skipping those without a usable image."""
        kept = {}
        for k, entry in enumerate(raw_images):
            if not isinstance(entry, Mapping) or not is_int(entry.get("id")):
                self._problem(None, None, f"image entry {k} has no integer 'id': {_short(entry)}", IMAGE_SKIPPED)
            elif int(entry["id"]) in kept:
                self._problem(None, int(entry["id"]), "duplicate image id", IMAGE_SKIPPED)
            else:
                entry = self._check_image(int(entry["id"]), dict(entry))
                if entry is not None:
                    kept[entry["id"]] = entry
        return kept

    def _check_image(self, image_id: int, entry: dict) -> dict | None:
        """One image entry -> itself with ``height``, ``width`` (and ``_path``) filled in, or None (skipped)."""
        entry["id"] = image_id
        if self._arrays is not None:
            if image_id not in self._arrays:
                self._problem(None, image_id, "no array for it in `images`", IMAGE_SKIPPED)
                return None
            h, w = self._arrays[image_id].shape[:2]
        else:
            path = self._find_file(image_id, entry.get("file_name"))
            if path is None:
                return None
            try:
                h, w = _image_size(path, self._verify)
            except (OSError, ValueError) as e:
                self._problem(None, image_id, str(e), IMAGE_SKIPPED)
                return None
            entry["_path"] = path
        said = {}
        for key in ("height", "width"):
            value = entry.get(key)
            if value is not None and not (is_int(value) and value > 0):
                self._problem(None, image_id, f"'{key}' must be a positive integer, got {_short(value)}",
                              "size taken from the image")
                value = None
            said[key] = value
        if said["height"] not in (None, h) or said["width"] not in (None, w):
            shown = [("?" if v is None else v) for v in said.values()]
            self._problem(None, image_id, f"the image is {h}x{w} but the file says {shown[0]}x{shown[1]}",
                          IMAGE_SKIPPED)
            return None
        entry["height"], entry["width"] = int(h), int(w)
        return entry

    def _find_file(self, image_id: int, name) -> Path | None:
        """The image file named ``name`` in the search folders, or None (with a problem)."""
        if name is None:
            self._problem(None, image_id, "no 'file_name'", IMAGE_SKIPPED)
            return None
        if not isinstance(name, str) or not name:
            self._problem(None, image_id, f"'file_name' must be a non-empty string, got {_short(name)}",
                          IMAGE_SKIPPED)
            return None
        path = next((d / name for d in self._search if _is(d / name, "file")), None)
        if path is None:
            where = " or ".join(str(d) for d in self._search)
            self._problem(None, image_id, f"image file {_short(name, 300)} not found in {where}", IMAGE_SKIPPED)
        return path

    def _check_annotations(self, raw_annotations: list, all_ids: set, label_of: dict) -> list[dict]:
        """Annotations -> the cleaned ones (for ``coco``); fills ``_targets`` with the non-crowd ones."""
        cleaned, seen = [], set()
        for k, entry in enumerate(raw_annotations):
            ann, rle = self._check_annotation(k, entry, seen, all_ids, label_of)
            if ann is None:
                continue
            cleaned.append(ann)
            if not ann["iscrowd"]:
                boxes, labels, rles = self._targets[ann["image_id"]]
                x, y, w, h = ann["bbox"]
                boxes.append([x, y, x + w, y + h])  # xywh -> xyxy
                labels.append(label_of[ann["category_id"]])
                rles.append(rle)
        return cleaned

    def _check_annotation(self, k: int, ann, seen: set, all_ids: set, label_of: dict) -> tuple[dict | None, dict]:
        """Annotation entry ``k`` -> (its cleaned copy, its RLE (None with ``masks=False``)), or (None, None)
        when it is skipped."""
        if not isinstance(ann, Mapping):
            self._problem(None, None, f"annotation entry {k} is not an object: {_short(ann)}", SKIPPED)
            return None, None
        aid, image_id = ann.get("id"), ann.get("image_id")
        image_id = int(image_id) if is_int(image_id) else None
        if not is_int(aid):
            self._problem(None, image_id, f"annotation entry {k} has no integer 'id' ({_short(aid)})", SKIPPED)
            return None, None
        aid = int(aid)
        if aid in seen:
            self._problem(aid, image_id, "duplicate annotation id", SKIPPED)
            return None, None
        seen.add(aid)
        if image_id is None:
            self._problem(aid, None, f"no integer 'image_id' ({_short(ann.get('image_id'))})", SKIPPED)
            return None, None
        if image_id not in all_ids:
            self._problem(aid, image_id, f"refers to image {image_id}, which is not in the file", SKIPPED)
            return None, None
        if image_id not in self._sizes:
            return None, None  # its image was skipped, and that is one problem already
        category, crowd = ann.get("category_id"), ann.get("iscrowd", 0)
        findings = []
        if not is_int(category):
            findings.append((f"'category_id' must be an integer, got {_short(category)}", SKIPPED))
        elif category not in label_of:
            findings.append((f"unknown category_id {_short(category)}", SKIPPED))
        elif not (is_int(crowd) and crowd in (0, 1)):
            findings.append((f"'iscrowd' must be 0 or 1, got {_short(crowd)}", SKIPPED))
        h, w = self._sizes[image_id]
        rle = segmentation = box = None
        if not findings and self._masks:
            rle, segmentation = _rasterise(ann.get("segmentation"), h, w, findings)
            box = None if rle is None else _clip_box(ann.get("bbox"), rle, h, w, findings)
        elif not findings:  # boxes only: the segmentation is not looked at
            box = _clip_box(ann.get("bbox"), None, h, w, findings)
        area = ann.get("area")
        if box is not None and not _positive_number(area):
            area = float(mask_utils.area(rle)) if self._masks else box[2] * box[3]
            if "area" in ann:
                findings.append((f"'area' must be a positive number, got {_short(ann['area'])}",
                                 f"area computed from the {'mask' if self._masks else 'box'}"))
        for message, action in findings:
            self._problem(aid, image_id, message, action)
        if box is None:
            return None, None
        cleaned = dict(ann) | {"id": aid, "image_id": image_id, "category_id": int(category), "bbox": box,
                               "segmentation": segmentation, "area": area, "iscrowd": int(crowd)}
        if not self._masks:
            del cleaned["segmentation"]  # not checked, so it stays out of what pycocotools reads
        return cleaned, rle


# --- helpers -------------------------------------------------------------------------------
# PIL reports a broken or hostile file with any of these (DecompressionBombError: a header
# claiming more than twice Image.MAX_IMAGE_PIXELS).
_PIL_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)
_REFUSED_MODES = {"I": "32-bit integer", "F": "32-bit float"}


def read_image(path) -> np.ndarray:
    """An image file (PNG, JPEG, ...) -> uint8 (H, W, 3) RGB.

    The whole file is decoded, so a truncated or corrupt file fails here (an ``OSError`` naming
    it). 8-bit modes become RGB with PIL's ``convert("RGB")``: grey (``L``, ``1``) repeated,
    palettes (``P``) looked up, alpha (``LA``, ``RGBA``) dropped. 16-bit grey (``I;16``, e.g. a
    16-bit PNG) is scaled, not clipped: ``round(v / 257)``, so 0 -> 0 and 65535 -> 255 (the
    inverse of the usual 8 -> 16 bit ``v * 257``), then repeated. 32-bit integer (``I``) and
    float (``F``) images have no known range and are refused: a ``ValueError`` naming the file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_image: path must be a file path (str or Path), got {type(path).__name__}")
    try:
        with Image.open(path) as im:
            im.load()  # decode everything now: a truncated file fails here
            mode = im.mode
            if mode not in _REFUSED_MODES:
                return _to_rgb(im)
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    except _PIL_ERRORS as e:
        raise OSError(f"cannot read image file {path}: {e}") from e
    raise ValueError(f"read_image: {path} is a {_REFUSED_MODES[mode]} image (PIL mode {mode!r}), "
                     "whose range is unknown: save it with 8 or 16 bits per channel")


def _to_rgb(im: Image.Image) -> np.ndarray:
    """A loaded PIL image -> uint8 (H, W, 3) (see :func:`read_image`)."""
    if im.mode.startswith("I;16"):
        grey = (np.asarray(im).astype(np.uint32) + 128) // 257  # (H, W) round(v / 257): 65535 -> 255
        return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    return np.array(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)  # (H, W, 3)


def _image_size(path: Path, verify: bool) -> tuple[int, int]:
    """(height, width) of an image file: decoded fully with :func:`read_image`, or from its header."""
    if verify:
        return read_image(path).shape[:2]
    try:
        with Image.open(path) as im:
            return im.size[::-1]
    except _PIL_ERRORS as e:
        raise OSError(f"cannot read image file {path}: {e}") from e


def _is(path: Path, kind: str) -> bool:
    """``path.is_file()`` / ``is_dir()``, False (not an error) for names the OS refuses (too long ...)."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except (OSError, ValueError):
        return False


def _check_flag(name: str, value) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"CocoDataset: {name} must be True or False, got {_short(value)}")


def _read_json(path: Path, file: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{file}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{file}: not a JSON file ({e})") from None
    except (ValueError, RecursionError) as e:  # an integer of > 4300 digits; lists nested too deeply
        raise DatasetError(f"{file}: cannot read the JSON ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise DatasetError(f"{file}: cannot read the annotation file ({e})") from None


_REPR = reprlib.Repr()  # bounded depth and length: safe on huge or deeply nested values
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring = 3, 6, 6, 4, 300


def _short(x, limit: int = 60) -> str:
    try:
        text = _REPR.repr(x)
    except ValueError:  # an int too long to print
        text = f"<{type(x).__name__} too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_float(v) -> float:
    """A number as a float; an int too large for a float is +-inf (not an OverflowError)."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _positive_number(v) -> bool:
    return is_number(v) and math.isfinite(_to_float(v)) and v > 0


def _rasterise(segmentation, h: int, w: int, findings: list) -> tuple[dict | None, object]:
    """A COCO segmentation -> (pycocotools RLE, cleaned segmentation), or (None, None) when unusable.

    Appends ``(message, action)`` to ``findings``. Polygons: see :func:`_polygon_rle`; an RLE
    must have the image's size and counts covering it exactly; the mask must not be empty.
    """
    if segmentation is None:
        findings.append(("no segmentation", SKIPPED))
        return None, None
    if isinstance(segmentation, list):
        rle, segmentation = _polygon_rle(segmentation, h, w, findings)
    elif isinstance(segmentation, Mapping):
        rle, segmentation = _rle(segmentation, h, w, findings)
    else:
        findings.append((f"unsupported segmentation ({type(segmentation).__name__})", SKIPPED))
        return None, None
    if rle is None:
        return None, None
    if mask_utils.area(rle) == 0:
        findings.append(("the mask is empty", SKIPPED))
        return None, None
    return rle, segmentation


def _polygon_rle(parts: list, h: int, w: int, findings: list) -> tuple[dict | None, list | None]:
    """Polygon parts ``[[x0, y0, x1, y1, ...], ...]`` -> (RLE of their union, the kept parts).

    A part that is not a list of at least 3 finite points within one image size of the image
    (:func:`_polygon_part`) is dropped. The annotation is skipped when no part is left, when
    it has more than :data:`MAX_POLYGON_PARTS` parts, or when the outline (the summed length
    of the edges, which pycocotools traces at 5 samples a pixel) exceeds ``4 (h + 1) (w + 1)``.
    """
    if not parts:
        findings.append(("empty polygon list", SKIPPED))
        return None, None
    if len(parts) > MAX_POLYGON_PARTS:
        findings.append((f"{len(parts)} polygon parts, more than {MAX_POLYGON_PARTS}", SKIPPED))
        return None, None
    kept, bad = [], []
    for part in parts:
        xy, problem = _polygon_part(part, h, w)
        if xy is None:
            bad.append(problem)
        else:
            kept.append(xy)
    if not kept:
        findings.append(("; ".join(bad), SKIPPED))
        return None, None
    outline, limit = sum(_outline(xy) for xy in kept), 4 * (h + 1) * (w + 1)
    if outline > limit:
        findings.append((f"polygon outline {outline:.0f} pixels long, more than 4 (h + 1) (w + 1) = {limit}",
                         SKIPPED))
        return None, None
    if bad:
        findings.append(("; ".join(bad), f"{len(bad)} polygon part{'s' if len(bad) > 1 else ''} dropped"))
    kept = [xy.ravel().tolist() for xy in kept]  # (P, 2) -> [x0, y0, x1, y1, ...]
    return mask_utils.merge(mask_utils.frPyObjects(kept, h, w)), kept


def _polygon_part(part, h: int, w: int) -> tuple[np.ndarray | None, str | None]:
    """One polygon part -> (its points float64 (P, 2), None), or (None, what is wrong with it)."""
    if not isinstance(part, (list, tuple)) or not all(is_number(v) for v in part):
        return None, f"polygon that is not a list of numbers ({_short(part, 30)})"
    if len(part) % 2:
        return None, f"polygon with an odd number of coordinates ({len(part)})"
    if len(part) < 6:
        return None, f"polygon with {len(part) // 2} point{'' if len(part) == 2 else 's'}"
    xy = np.array([_to_float(v) for v in part], dtype=np.float64).reshape(-1, 2)  # (2P,) -> (P, 2)
    if not np.isfinite(xy).all():
        return None, "polygon with NaN or inf coordinates"
    size = np.array([w, h], dtype=np.float64)
    outside = ((xy < -size) | (xy > 2 * size)).any(axis=1)  # (P,)
    if outside.any():
        x, y = xy[outside.argmax()]
        return None, (f"polygon point ({x:g}, {y:g}) more than the image's size outside it "
                      f"(x must lie in [-{w}, {2 * w}], y in [-{h}, {2 * h}])")
    return xy, None


def _outline(xy: np.ndarray) -> float:
    """Perimeter of the closed polygon ``xy`` (P, 2), in pixels."""
    edges = np.roll(xy, -1, axis=0) - xy  # (P, 2): point k -> point k + 1, the last back to the first
    return float(np.hypot(edges[:, 0], edges[:, 1]).sum())


def _rle(segmentation: Mapping, h: int, w: int, findings: list) -> tuple[dict | None, dict | None]:
    """An RLE ``{"size": [h, w], "counts": [...] or "..."}`` -> (pycocotools RLE, cleaned copy)."""
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(s) for s in size)):
        findings.append((f"RLE without a valid 'size' ({_short(size, 30)})", SKIPPED))
        return None, None
    if tuple(size) != (h, w):
        findings.append((f"RLE size {_short(size[0], 20)}x{_short(size[1], 20)} differs from the image's {h}x{w}",
                         SKIPPED))
        return None, None
    if isinstance(counts, list):
        bad = next((c for c in counts if not (is_int(c) and 0 <= c <= h * w)), None)
        if bad is not None:
            findings.append((f"RLE counts must be integers from 0 to {h * w}, got {_short(bad, 30)}", SKIPPED))
            return None, None
        total = sum(counts)
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
        counts = [int(c) for c in counts]
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w), {"size": [h, w], "counts": counts}
    text = counts.decode("ascii") if isinstance(counts, bytes) else counts
    return {"size": [h, w], "counts": text.encode("ascii")}, {"size": [h, w], "counts": text}


def _compressed_rle_total(counts) -> int | None:
    """Sum of the run lengths in a compressed RLE string (pycocotools' ``rleFrString``); None if malformed.

    Each run is a little-endian sequence of 6-bit characters (``chr(48 + bits)``): 5 value
    bits and a continuation bit, the last one sign-extended; from the third run on, the
    value is the difference to the run two before. A run longer than 7 characters (35 bits,
    more than pycocotools ever writes) is malformed: pycocotools' C decoder would overflow.
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
            if p >= len(data) or k == 7:
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


def _clip_box(bbox, rle: dict | None, h: int, w: int, findings: list) -> list[float] | None:
    """An annotation's ``bbox`` [x, y, w, h] -> clipped to the image, or None when unusable.

    A missing ``bbox`` is computed from the mask ``rle``; without one (boxes only) the annotation
    is skipped. Appends ``(message, action)`` to ``findings``.
    """
    if bbox is None and rle is None:
        findings.append(("no bbox", SKIPPED))
        return None
    if bbox is None:
        findings.append(("no bbox", "box computed from the mask"))
        return [float(v) for v in mask_utils.toBbox(rle)]
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        findings.append((f"bbox must be 4 numbers [x, y, w, h], got {_short(bbox, 40)}", SKIPPED))
        return None
    x, y, bw, bh = (_to_float(v) for v in bbox)
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
