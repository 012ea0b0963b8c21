"""Progressive hints of exercise 08, revealed one at a time by ``mrcnn-np check 08 --hint``."""

HINTS = {
    "box_iou": [
        "Two questions: which element does a thread compute (j, i = cuda.grid(2): x first, the\n"
        "column), and how many blocks does the launch need (enough whole blocks to cover m columns\n"
        "along x and n rows along y). The arithmetic is chapter 2's IoU for one pair, with min/max.",
        "Kernel: bounds check first (i < out.shape[0] and j < out.shape[1]), then the two areas, the\n"
        "overlap's width and height (min of the right edges minus max of the left edges), inter,\n"
        "union, and the IoU (0 where union is 0). Launcher: return early when n or m is 0; copy in\n"
        "with cuda.to_device; allocate a zeroed output; launch; copy_to_host.",
        "The steps, nearly in code:\n"
        "  kernel:  j, i = cuda.grid(2)\n"
        "           if i < out.shape[0] and j < out.shape[1]:\n"
        "               area_i = (b1[i, 2] - b1[i, 0]) * (b1[i, 3] - b1[i, 1])   (area_j likewise)\n"
        "               w = min(b1[i, 2], b2[j, 2]) - max(b1[i, 0], b2[j, 0])     (h likewise)\n"
        "               inter = max(w, 0) * max(h, 0);  union = area_i + area_j - inter\n"
        "               out[i, j] = inter / union if union > 0 else 0\n"
        "  launch:  blocks = (math.ceil(m / 16), math.ceil(n / 16))\n"
        "           box_iou_kernel[blocks, (16, 16)](cuda.to_device(boxes1), cuda.to_device(boxes2), out)",
        "Pitfalls: m // 16 rounds down and leaves the last partial block out; m / 16 is a float, which\n"
        "a launch refuses; the comparison is exact, so area_i - inter + area_j (another rounding)\n"
        "fails; cuda.device_array is not zeroed (start from cuda.to_device(np.zeros(...))).",
    ],
    "element_index": [
        "np.unravel_index(k, (R, C, PH, PW)) is what you are writing, with scalars only: in C order\n"
        "the last index varies fastest, so q is what is left of k after whole rows of PW, and so on.",
        "Peel the indices off from the last: q is k modulo PW; p is (k // PW) modulo PH; c is\n"
        "(k // (PW * PH)) modulo C; r is what remains (R is not needed). Integer operations only.",
        "The steps, nearly in code:\n"
        "  q = k % PW\n"
        "  p = (k // PW) % PH\n"
        "  c = (k // (PW * PH)) % C\n"
        "  r = k // (PW * PH * C)\n"
        "  return r, c, p, q",
        "Pitfalls: / gives a float index; keep the @cuda.jit(device=True) decorator (a kernel cannot\n"
        "call a plain Python function on a GPU); the grader calls element_index.py_func on the host.",
    ],
    "roi_align": [
        "One thread per output element: thread k = cuda.grid(1) finds its (r, c, p, q) with your\n"
        "element_index, and sums the plan's weighted taps of its bin; the launcher copies the\n"
        "features and the plan's ten arrays to the device and launches a 1-D grid.",
        "Kernel: bounds check against R * C * PH * PW; b = batch[r]; a sum that starts at 0; two\n"
        "loops, over iy < y_low.shape[2] and ix < x_low.shape[2]; in each, the four taps of the\n"
        "point; at the end, one division by count[r]. Launcher: R == 0 returns early; the plan's\n"
        "arrays as np.ascontiguousarray copies to the device; blocks = ceil(elements / threads).",
        "The steps, nearly in code:\n"
        "  k = cuda.grid(1);  R, C, PH, PW = out.shape\n"
        "  if k < R * C * PH * PW:\n"
        "      r, c, p, q = element_index(k, C, PH, PW);  b = batch[r];  acc = 0.0\n"
        "      for iy in range(y_low.shape[2]):\n"
        "          for ix in range(x_low.shape[2]):\n"
        "              acc += y_w_low[r, p, iy] * x_w_low[r, q, ix] * features[b, c, y_low[r, p, iy],\n"
        "                     x_low[r, q, ix]]   + the three other taps (low/high, high/low, high/high)\n"
        "      out[r, c, p, q] = acc / count[r]\n"
        "  launch: roi_align_kernel[math.ceil(R * C * PH * PW / 128), 128](*device_arrays, out)",
        "Pitfalls: read the box's own image (features[batch[r]]), not image 0; a 1-D launch takes\n"
        "two ints; divide once, at the end (a bin is a mean); if element_index is wrong, so is this.\n"
        "In the simulator an index out of range raises IndexError naming the thread.",
    ],
}
