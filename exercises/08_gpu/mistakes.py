"""The classic mistakes of exercise 08, each declared once (how the grader uses them: exercises/README.md).

The reference solution starts every output from zeros, so an element that no thread writes
reads 0 there: a learner whose output was zeroed too is recognised exactly; one that used
``cuda.device_array`` (whose unwritten elements hold whatever was in memory) gets the
grader's own hint, worked out from the launch it recorded (grader.py, ``_coverage_hint``).
"""

BLOCKS_2D = "(math.ceil(m / THREADS_2D[0]), math.ceil(n / THREADS_2D[1]))"
BLOCKS_1D = "blocks = math.ceil(R * C * PH * PW / THREADS)"
CEIL = ("round the number of blocks up: blocks = math.ceil(size / threads) (or (size + threads - 1) // threads); "
        "size // threads leaves the last, partial block of elements without threads")

MISTAKES = {
    "box_iou": [
        ("threads mapped i, j = cuda.grid(2): x taken as the row", [("j, i = cuda.grid(2)", "i, j = cuda.grid(2)")],
         "cuda.grid(2) returns (x, y), x first: x is the fastest-varying index and the launcher sized it for the m "
         "columns, so take the column from it: j, i = cuda.grid(2) (a warp then writes 32 neighbours of a row)"),
        ("2-D grid rounded down: size // threads", [(BLOCKS_2D, "(m // THREADS_2D[0], n // THREADS_2D[1])")], CEIL),
        ("no guard for a union of 0", [("inter / union if union > 0 else 0", "inter / union")],
         "two boxes of zero area (points, lines) have union 0: their IoU is 0, not 0 / 0 = nan: "
         "inter / union if union > 0 else 0"),
    ],
    "element_index": [
        ("p fastest instead of q", [("    q = k % PW\n    p = (k // PW) % PH\n",
                                     "    p = k % PH\n    q = (k // PH) % PW\n")],
         "the last index, q, varies fastest (C order, as np.unravel_index): q = k % PW, then p = (k // PW) % PH; "
         "threads k and k + 1 then write neighbours in memory (coalesced stores)"),
        ("c not reduced modulo C", [("c = (k // (PW * PH)) % C", "c = k // (PW * PH)")],
         "k // (PW * PH) counts whole (PH, PW) planes, of every box: take it modulo C for the channel, "
         "c = (k // (PW * PH)) % C, and divide by C for the box, r = k // (PW * PH * C)"),
    ],
    "roi_align": [
        ("the sum of the sample points instead of their mean", [("out[r, c, p, q] = acc / count[r]",
                                                                  "out[r, c, p, q] = acc")],
         "a bin is the mean of its sample points: divide the sum by count[r], the number of points per bin of box r"),
        ("every box read from the first image", [("b = batch[r]  # the box's image", "b = 0  # the box's image")],
         "read each box from its own image: features[batch[r], c, ...] (plan.batch holds the image of every box)"),
        ("1-D grid rounded down: size // threads", [(BLOCKS_1D, "blocks = R * C * PH * PW // THREADS")], CEIL),
    ],
}
