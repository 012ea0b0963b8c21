"""Hostile COCO files: CocoDataset, in a fresh interpreter, must neither crash nor hang on them.

Before the checks, a polygon coordinate of 1e12 reached pycocotools' C rasteriser and killed
the interpreter (SIGSEGV), and one of 1e8 took minutes; an overlong compressed-RLE run
overflows its decoder. Each hostile annotation must instead be one problem naming its id.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 32, 40
TIMEOUT_S = 60
ROOT = Path(__file__).resolve().parents[2]  # the repository: the subprocess imports its mrcnn_np

GOOD = [[10, 5, 30, 5, 30, 25, 10, 25]]
DENSE_EDGE = np.stack([np.linspace(10, 20, 100_000), np.full(100_000, 10.0)], 1).ravel().tolist() + [20, 20, 10, 20]

HOSTILE = {  # annotation id -> (changes to a good annotation on image 1, expected words in its problem)
    10: ({"segmentation": [[10, 5, 1e12, 5, 30, 25]]}, "polygon point (1e+12, 5) more than the image's size"),
    11: ({"segmentation": [[10, 5, 1e8, 5, 30, 25]]}, "polygon point (1e+08, 5)"),
    12: ({"segmentation": [[10, -1e12, 30, 5, 30, 25]]}, "polygon point (10, -1e+12)"),
    13: ({"segmentation": [[10, 5, float("nan"), 5, 30, 25]]}, "NaN or inf"),
    14: ({"segmentation": [[10, 5, float("inf"), 5, 30, 25]]}, "NaN or inf"),
    15: ({"segmentation": [[10, 5, 30, "5", 30, 25]]}, "not a list of numbers"),
    16: ({"segmentation": [[10, 5, 10**400, 5, 30, 25]]}, "NaN or inf"),
    17: ({"segmentation": [[0, 0, W, H] * 250_000]}, "polygon outline"),  # a million numbers
    18: ({"segmentation": GOOD * 5000}, "5000 polygon parts, more than 1000"),
    19: ({"segmentation": [json.loads("[" * 500 + "1" + "]" * 500)]}, "not a list of numbers"),
    21: ({"segmentation": {"size": [10**12, W], "counts": [H * W]}}, f"RLE size 1000000000000x{W} differs"),
    22: ({"segmentation": {"size": [H, W], "counts": [10**18, 5]}}, "RLE counts must be integers from 0"),
    23: ({"segmentation": {"size": [H, W], "counts": [1, 2]}}, "RLE counts cover 3 pixels"),
    24: ({"segmentation": {"size": [H, W], "counts": "P" * 20 + "0"}}, "malformed RLE counts"),
    25: ({"segmentation": {"size": [H, W], "counts": "0" + "1" * 10**5}}, "RLE counts cover"),
    26: ({"iscrowd": "0"}, "'iscrowd' must be 0 or 1, got '0'"),
    27: ({"bbox": [10, 5, 1e308, 1e308]}, "box outside the image"),  # clipped, kept
    28: ({"bbox": [10, 5, float("inf"), 20]}, "bbox with NaN or inf"),
    29: ({"area": 10**400}, "'area' must be a positive number"),  # recomputed, kept
    30: ({"category_id": 10**30}, "unknown category_id"),
    31: ({"segmentation": {"size": json.loads("[" * 500 + "]" * 500), "counts": "0"}}, "RLE without a valid 'size'"),
    32: ({"segmentation": [{"size": [H, W], "counts": "0"}]}, "not a list of numbers"),
    33: ({"category_id": True}, "'category_id' must be an integer, got True"),
}
KEPT = {1: None, 20: None, 27: "box clipped to the image", 29: "area computed from the mask"}

SCRIPT = """
import json, sys, warnings
from mrcnn_np.data.coco import CocoDataset, DatasetError
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CocoDataset(sys.argv[1])
except DatasetError as e:
    print(json.dumps({"error": str(e)}))
    raise SystemExit(0)
shapes = [[list(ds[i][0].shape), list(ds[i][1]["masks"].shape)] for i in range(len(ds))]
print(json.dumps({"image_ids": ds.image_ids, "kept": sorted(ds.coco.getAnnIds()), "shapes": shapes,
                  "problems": [[p.annotation_id, p.image_id, p.message, p.action] for p in ds.problems]}))
"""


def build(path):
    """Run SCRIPT on ``path`` in a fresh interpreter; its JSON report (fails on a crash or a hang)."""
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True,
                         timeout=TIMEOUT_S, cwd=ROOT)
    assert run.returncode == 0, f"exit {run.returncode} (negative: killed by a signal)\n{run.stderr[-3000:]}"
    return json.loads(run.stdout.splitlines()[-1])


def png_header(path, width, height):
    """A PNG of a signature, an IHDR claiming ``width`` x ``height`` RGB, and nothing else."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


def test_hostile_annotations_are_problems_naming_their_ids_never_a_crash(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    for name in ("good.png", "short.png", "truncated.png"):
        Image.fromarray(pixels).save(tmp_path / name)
    data = (tmp_path / "truncated.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    png_header(tmp_path / "bomb.png", 100_000, 100_000)
    images = [{"id": 1, "file_name": "good.png", "height": H, "width": W},
              {"id": 2, "file_name": "short.png", "height": str(H), "width": W},
              {"id": 3, "file_name": "truncated.png", "height": H, "width": W},
              {"id": 4, "file_name": "bomb.png"},
              {"id": 5, "file_name": "x" * 100_000}]
    base = {"image_id": 1, "category_id": 1, "segmentation": GOOD, "bbox": [10, 5, 20, 20], "area": 400, "iscrowd": 0}
    annotations = [base | {"id": 1}, base | {"id": 20, "segmentation": [DENSE_EDGE], "bbox": [10, 10, 10, 10]}]
    annotations += [base | {"id": aid} | change for aid, (change, _) in HOSTILE.items()]
    annotations += [base | {"id": True}, base | {"id": 40, "image_id": 3}]  # a bool id; an image that is skipped
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "thing"}]}))

    report = build(path)
    assert report["image_ids"] == [1, 2] and report["shapes"] == [[[H, W, 3], [len(KEPT), H, W]], [[H, W, 3], [0, H, W]]]
    assert report["kept"] == sorted(KEPT)
    by_annotation = {}
    for aid, image_id, message, action in report["problems"]:
        by_annotation.setdefault(aid, []).append((image_id, message, action))
    for aid, (_, words) in HOSTILE.items():
        [(image_id, message, action)] = by_annotation[aid]
        assert image_id == 1 and words in message, (aid, message)
        assert action == (KEPT[aid] if aid in KEPT else "annotation skipped"), (aid, action)
    bool_entry = len(annotations) - 2
    assert (1, f"annotation entry {bool_entry} has no integer 'id' (True)", "annotation skipped") in by_annotation[None]
    images_problems = {image_id: message for aid, image_id, message, _ in report["problems"] if aid is None}
    assert images_problems[2] == "'height' must be a positive integer, got '32'"
    assert "truncated.png" in images_problems[3] and "truncated" in images_problems[3]
    assert "bomb.png" in images_problems[4] and "decompression bomb" in images_problems[4]
    assert "not found" in images_problems[5]
    assert 40 not in by_annotation  # its image was skipped: one problem, the image's


def test_unparseable_files_are_a_dataset_error_not_a_crash(tmp_path):
    cases = {"deep.json": ('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}", "RecursionError"),
             "digits.json": ('{"images": [], "x": ' + "1" * 5000 + "}", "4300 digits"),
             "nan_ids.json": (json.dumps({"images": [{"id": float("nan"), "file_name": "a.png"}],
                                          "categories": [{"id": 1}]}), "no usable image")}
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        report = build(tmp_path / name)
        assert str(tmp_path / name) in report["error"] and words in report["error"], report
