"""Every op, layer and optimiser step on the CuPy stand-in equals the NumPy run bit for bit.

Each case builds its inputs on the host from a seeded generator, runs once with the NumPy
arrays and once with the same arrays moved to the stand-in (:mod:`tests.fake_cupy`, which
refuses implicit host conversion and host/device mixing as CuPy does), and compares
everything that comes out -- results, gradients of every input and parameter, running
statistics, momentum buffers -- byte for byte, with the same dtype and shape. A host
``ndarray`` coming out of the device run is a failure (a silent round trip), and so is an
explicit copy to the host inside the call (``to_host``); Python numbers and lists of sizes
are documented host outputs. Both runs are inside ``default_impl("numpy")``: the readable
NumPy references run on either array module, whereas the numba kernels are not bit-identical
to them and the numba.cuda kernels cannot take stand-in arrays. Syncs per call are recorded
in ``SYNCS`` (read by whoever wants the table; not asserted here).
"""

from __future__ import annotations

import numpy as np
import pytest

from mrcnn_np import backend, nn
from mrcnn_np import config as configs
from mrcnn_np.autograd import Tensor
from mrcnn_np.model.backbone import resnet_fpn_backbone
from mrcnn_np.nn import functional as F
from mrcnn_np.nn.optim import SGD, WarmupMultiStepLR
from mrcnn_np.ops import batched_nms, box_area, box_iou, clip_boxes_to_image, nms, remove_small_boxes
from mrcnn_np.ops.box_coder import BoxCoder
from mrcnn_np.ops.boxes import box_iou_numpy
from mrcnn_np.ops.matcher import Matcher, labels_of_matches
from mrcnn_np.ops.nms import nms_numpy
from mrcnn_np.ops.poolers import LevelMapper, MultiScaleRoIAlign, level_of_boxes
from mrcnn_np.ops.roi_align import (
    axis_matrix,
    convert_boxes_to_roi_format,
    roi_align,
    roi_align_backward_numpy,
    roi_align_numpy,
    sampling_plan,
)
from mrcnn_np.ops.roi_pool import roi_pool
from mrcnn_np.ops.roi_warp import roi_warp
from mrcnn_np.ops.sampler import BalancedPositiveNegativeSampler
from tests.fake_cupy import counting
from tests.unit.test_wrong_types import public_ops

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
SYNCS: dict[str, object] = {}  # case id -> device-to-host syncs of one call (layers: forward, backward)


@pytest.fixture(autouse=True)
def _reference_kernels():
    with backend.default_impl("numpy"):
        yield


# --- moving and comparing -------------------------------------------------------------------
def to_dev(obj):
    """Every ndarray inside ``obj`` (lists, tuples, NamedTuples, dicts) moved to the device."""
    if isinstance(obj, np.ndarray):
        return backend.to_device(obj, "cuda")
    if isinstance(obj, dict):
        return {k: to_dev(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [to_dev(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


def assert_same(host, dev, where="result"):
    """``dev`` (the stand-in run) equals ``host`` (the NumPy run) bit for bit, arrays on the device."""
    if isinstance(host, Tensor):
        assert isinstance(dev, Tensor), f"{where}: expected a Tensor, got {type(dev).__name__}"
        assert_same(host.data, dev.data, where)
    elif isinstance(host, np.ndarray):
        assert backend.is_cupy_array(dev), f"{where}: the device run gave a host {type(dev).__name__}"
        got = dev.get()
        assert (got.dtype, got.shape) == (host.dtype, host.shape), f"{where}: {got.dtype} {got.shape}"
        np.testing.assert_array_equal(got, host, err_msg=where, strict=True)
        assert got.tobytes() == host.tobytes(), f"{where}: equal values, different bits (-0.0 or NaN)"
    elif isinstance(host, dict):
        assert isinstance(dev, dict) and list(dev) == list(host), f"{where}: keys {list(dev)} != {list(host)}"
        for k in host:
            assert_same(host[k], dev[k], f"{where}[{k!r}]")
    elif isinstance(host, (list, tuple)):
        assert type(dev) is type(host) and len(dev) == len(host), f"{where}: {type(dev).__name__} of {len(dev)}"
        for i, (h, d) in enumerate(zip(host, dev, strict=True)):
            assert_same(h, d, f"{where}[{i}]")
    elif hasattr(host, "__dict__"):  # e.g. the LevelMapper of setup_scales
        assert type(dev) is type(host)
        assert_same(vars(host), vars(dev), where)
    else:  # Python numbers, strings, None: host outputs by design
        assert type(dev) is type(host) and dev == host, f"{where}: {dev!r} != {host!r}"


# --- inputs -----------------------------------------------------------------------------------
def boxes(rng, n, dtype, size=32.0, small=1.0):
    xy = rng.uniform(0, 0.75 * size, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(small, size / 2, (n, 2))], axis=1).astype(dtype)


def features(rng, dtype, shape=(2, 3, 10, 12)):
    return rng.standard_normal(shape).astype(dtype)


def pyramid(rng, dtype):  # P2..P5 of a 64 x 64 image
    return {str(i): features(rng, dtype, (2, 3, 16 >> i, 16 >> i)) for i in range(4)}


def plan(rng, dtype, aligned=False):
    rois = convert_boxes_to_roi_format([boxes(rng, 3, dtype, 20), boxes(rng, 2, dtype, 20)])
    return sampling_plan(rois, 0.5, (3, 2), -1, aligned, 10, 12, dtype)


def pooler():
    return MultiScaleRoIAlign(["0", "1", "2", "3"], (3, 2), 2, canonical_scale=16)


def pooled_boxes(rng, dtype):  # sides 1..60 of 64: every level gets boxes
    big = np.array([[2.0, 3.0, 60.0, 50.0]], dtype)
    return [boxes(rng, 6, dtype, 64, small=1.0), np.concatenate([boxes(rng, 4, dtype, 64, small=8.0), big])]


# --- ops: name (as public_ops() spells it, [variant]) -> build(rng, dtype) -> (callable, kwargs) -------
OP_CASES = {
    "boxes.box_area": lambda r, dt: (box_area, dict(boxes=boxes(r, 6, dt))),
    "boxes.box_iou": lambda r, dt: (box_iou, dict(boxes1=boxes(r, 5, dt), boxes2=boxes(r, 7, dt))),
    "boxes.box_iou_numpy": lambda r, dt: (box_iou_numpy, dict(boxes1=boxes(r, 5, dt), boxes2=boxes(r, 7, dt))),
    "boxes.clip_boxes_to_image": lambda r, dt: (clip_boxes_to_image,
                                                dict(boxes=boxes(r, 6, dt) * 1.5 - 5, size=(20, 30))),
    "boxes.remove_small_boxes": lambda r, dt: (remove_small_boxes, dict(boxes=boxes(r, 8, dt), min_size=8.0)),
    "nms.nms": lambda r, dt: (nms, dict(boxes=boxes(r, 12, dt), scores=r.random(12).astype(dt), iou_threshold=0.3)),
    "nms.nms_numpy": lambda r, dt: (nms_numpy, dict(boxes=boxes(r, 12, dt), scores=r.random(12).astype(dt),
                                                    iou_threshold=0.3)),
    "nms.batched_nms": lambda r, dt: (batched_nms, dict(boxes=boxes(r, 12, dt), scores=r.random(12).astype(dt),
                                                        idxs=r.integers(0, 3, 12), iou_threshold=0.3)),
    "box_coder.BoxCoder.encode": lambda r, dt: (BoxCoder((10.0, 10.0, 5.0, 5.0)).encode,
                                                dict(reference_boxes=boxes(r, 6, dt), proposals=boxes(r, 6, dt))),
    "box_coder.BoxCoder.decode": lambda r, dt: (BoxCoder((10.0, 10.0, 5.0, 5.0)).decode,
                                                dict(rel_codes=r.standard_normal((6, 8)).astype(dt),
                                                     boxes=boxes(r, 6, dt))),
    "matcher.Matcher.__call__[low-quality]": lambda r, dt: (
        Matcher(0.6, 0.3, True).__call__, dict(match_quality_matrix=box_iou_numpy(boxes(r, 3, dt), boxes(r, 9, dt)))),
    "matcher.Matcher.__call__[plain]": lambda r, dt: (
        Matcher(0.5, 0.2).__call__, dict(match_quality_matrix=box_iou_numpy(boxes(r, 3, dt), boxes(r, 9, dt)))),
    "matcher.labels_of_matches": lambda r, dt: (labels_of_matches, dict(matches=r.integers(-2, 4, 10),
                                                                        gt_labels=r.integers(1, 5, 4))),
    "sampler.BalancedPositiveNegativeSampler.__call__": lambda r, dt: (
        BalancedPositiveNegativeSampler(6, 0.25).__call__,
        dict(matched_idxs=[r.integers(-1, 3, 20), r.integers(-1, 2, 15)], rng=np.random.default_rng(1))),
    "roi_align.roi_align[aligned]": lambda r, dt: (roi_align, dict(
        input=features(r, dt), boxes=[boxes(r, 3, dt, 20), boxes(r, 2, dt, 20)], output_size=(3, 2),
        spatial_scale=0.5, sampling_ratio=-1, aligned=True)),
    "roi_align.roi_align[rois-5]": lambda r, dt: (roi_align, dict(
        input=features(r, dt), boxes=convert_boxes_to_roi_format([boxes(r, 2, dt, 12), boxes(r, 3, dt, 12)]),
        output_size=2, spatial_scale=1.0, sampling_ratio=2)),
    "roi_align.convert_boxes_to_roi_format": lambda r, dt: (convert_boxes_to_roi_format,
                                                            dict(boxes=[boxes(r, 3, dt), boxes(r, 2, dt)])),
    "roi_align.sampling_plan": lambda r, dt: (sampling_plan, dict(
        rois=convert_boxes_to_roi_format([boxes(r, 4, dt, 20)]), spatial_scale=0.5, output_size=(3, 2),
        sampling_ratio=-1, aligned=False, height=10, width=12, dtype=dt)),
    "roi_align.axis_matrix": lambda r, dt: (axis_matrix, dict(taps=plan(r, dt).y, r=1, size=10)),
    "roi_align.roi_align_numpy": lambda r, dt: (roi_align_numpy, dict(features=features(r, dt),
                                                                      plan=plan(r, dt, True), output_size=(3, 2))),
    "roi_align.roi_align_backward_numpy": lambda r, dt: (roi_align_backward_numpy, dict(
        grad_out=features(r, dt, (5, 3, 3, 2)), plan=plan(r, dt), input_shape=(2, 3, 10, 12))),
    "roi_pool.roi_pool": lambda r, dt: (roi_pool, dict(input=features(r, dt), output_size=(3, 2), spatial_scale=0.5,
                                                       boxes=[boxes(r, 3, dt, 20), boxes(r, 2, dt, 20)])),
    "roi_warp.roi_warp": lambda r, dt: (roi_warp, dict(input=features(r, dt), output_size=(3, 2), spatial_scale=0.5,
                                                       sampling_ratio=2,
                                                       boxes=[boxes(r, 3, dt, 20), boxes(r, 2, dt, 20)])),
    "poolers.MultiScaleRoIAlign.__call__[warp]": lambda r, dt: (
        MultiScaleRoIAlign(["0", "1", "2", "3"], (3, 2), 2, canonical_scale=16, roi_pooler="warp").__call__,
        dict(features=pyramid(r, dt), boxes=pooled_boxes(r, dt), image_shapes=[(64, 64), (60, 64)])),
    "poolers.MultiScaleRoIAlign.__call__[pool]": lambda r, dt: (
        MultiScaleRoIAlign(["0", "1", "2", "3"], (3, 2), 2, canonical_scale=16, roi_pooler="pool").__call__,
        dict(features=pyramid(r, dt), boxes=pooled_boxes(r, dt), image_shapes=[(64, 64), (60, 64)])),
    "poolers.LevelMapper.__call__": lambda r, dt: (LevelMapper(2, 5, canonical_scale=16).__call__,
                                                   dict(boxlists=pooled_boxes(r, dt))),
    "poolers.level_of_boxes": lambda r, dt: (level_of_boxes, dict(boxes=pooled_boxes(r, dt), k_min=2, k_max=5)),
    "poolers.MultiScaleRoIAlign.__call__": lambda r, dt: (pooler().__call__, dict(
        features=pyramid(r, dt), boxes=pooled_boxes(r, dt), image_shapes=[(64, 64), (60, 64)])),
    "poolers.MultiScaleRoIAlign.setup_scales": lambda r, dt: (pooler().setup_scales, dict(
        features=list(pyramid(r, dt).values()), image_shapes=[(64, 64)])),
}
NO_ARRAYS = {  # public callables that take numbers and names only: nothing to run on a device
    "box_coder.BoxCoder", "matcher.Matcher", "sampler.BalancedPositiveNegativeSampler", "poolers.infer_scale",
    "poolers.LevelMapper", "poolers.MultiScaleRoIAlign", "roi_align.AxisTaps", "roi_align.SamplingPlan"}


def test_every_public_op_has_a_device_case():
    covered = {name.split("[")[0] for name in OP_CASES}
    assert covered | NO_ARRAYS == public_ops(), {"missing (add to OP_CASES)": sorted(public_ops() - covered - NO_ARRAYS),
                                                 "stale": sorted((covered | NO_ARRAYS) - public_ops())}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_op_on_device_equals_numpy(fake_cupy, name, dtype):
    fn, kwargs = OP_CASES[name](np.random.default_rng(0), dtype)
    host = fn(**kwargs)
    fn, kwargs = OP_CASES[name](np.random.default_rng(0), dtype)  # fresh inputs (and generators), moved
    kwargs = to_dev(kwargs)
    with fake_cupy.counting() as counts:
        dev = fn(**kwargs)
    SYNCS[f"{name}-{np.dtype(dtype)}"] = counts.syncs
    assert counts.to_host == 0, f"{name}: {counts.to_host} explicit copies to the host inside the call"
    assert_same(host, dev, name)


# --- layers, forward and backward: name -> build(rng, dtype) -> (fn, leaves, constants) ------------------
def _n(r, dt, *shape, lo=None):
    a = r.standard_normal(shape).astype(dt)
    return a if lo is None else np.abs(a) + dt(lo)


def _bce(r, dt, reduction):
    x = 4 * _n(r, dt, 5, 3)
    return (lambda input, target, weight: F.binary_cross_entropy_with_logits(input, target, weight, reduction),
            dict(input=x, target=r.random((5, 3)).astype(dt)), dict(weight=r.random((5, 3)).astype(dt)))


def _ce(r, dt, reduction):
    target = r.integers(0, 4, 6)
    target[2] = -100
    return (lambda input, target: F.cross_entropy(input, target, reduction), dict(input=_n(r, dt, 6, 4)),
            dict(target=target))


def _bn(r, dt, training, ndim=4):
    shape = (4, 3, 5, 5) if ndim == 4 else (6, 3)
    return (lambda input, weight, bias, rm, rv: F.batch_norm(input, rm, rv, weight, bias, training, 0.1, 1e-5),
            dict(input=_n(r, dt, *shape), weight=_n(r, dt, 3), bias=_n(r, dt, 3)),
            dict(rm=_n(r, dt, 3), rv=_n(r, dt, 3, lo=0.5)))


def _pool_level_maps(r, dt):
    p = pyramid(r, dt)
    fn = pooler()
    return (lambda p0, p1, p2, p3, boxes: fn({"0": p0, "1": p1, "2": p2, "3": p3}, boxes, [(64, 64), (64, 60)]),
            dict(p0=p["0"], p1=p["1"], p2=p["2"], p3=p["3"]), dict(boxes=pooled_boxes(r, dt)))


LAYER_CASES = {
    "conv2d": lambda r, dt: (lambda input, weight, bias: F.conv2d(input, weight, bias, stride=2, padding=1),
                             dict(input=_n(r, dt, 2, 3, 7, 6), weight=_n(r, dt, 4, 3, 3, 3), bias=_n(r, dt, 4)), {}),
    "conv2d-dilated": lambda r, dt: (lambda input, weight: F.conv2d(input, weight, None, 1, 2, dilation=2),
                                     dict(input=_n(r, dt, 1, 2, 6, 7), weight=_n(r, dt, 3, 2, 3, 3)), {}),
    "conv_transpose2d": lambda r, dt: (
        lambda input, weight, bias: F.conv_transpose2d(input, weight, bias, stride=2, padding=1, output_padding=1),
        dict(input=_n(r, dt, 2, 3, 5, 4), weight=_n(r, dt, 3, 4, 3, 3), bias=_n(r, dt, 4)), {}),
    "linear": lambda r, dt: (F.linear, dict(input=_n(r, dt, 2, 5, 6), weight=_n(r, dt, 3, 6), bias=_n(r, dt, 3)), {}),
    "relu": lambda r, dt: (F.relu, dict(input=_n(r, dt, 3, 4, 5)), {}),
    "sigmoid": lambda r, dt: (F.sigmoid, dict(input=30 * _n(r, dt, 4, 5)), {}),
    "softmax": lambda r, dt: (lambda input: F.softmax(input, dim=1), dict(input=5 * _n(r, dt, 3, 6, 2)), {}),
    "log_softmax": lambda r, dt: (lambda input: F.log_softmax(input, dim=-1), dict(input=5 * _n(r, dt, 3, 6)), {}),
    "max_pool2d": lambda r, dt: (lambda input: F.max_pool2d(input, 3, 2, 1), dict(input=_n(r, dt, 2, 3, 9, 8)), {}),
    "frozen_batch_norm2d": lambda r, dt: (
        lambda input, w, b, rm, rv: F.frozen_batch_norm2d(input, w, b, rm, rv), dict(input=_n(r, dt, 2, 3, 4, 5)),
        dict(w=_n(r, dt, 3), b=_n(r, dt, 3), rm=_n(r, dt, 3), rv=_n(r, dt, 3, lo=0.5))),
    "batch_norm-train": lambda r, dt: _bn(r, dt, True),
    "batch_norm-train-2d": lambda r, dt: _bn(r, dt, True, ndim=2),
    "batch_norm-eval": lambda r, dt: _bn(r, dt, False),
    "interpolate-nearest-size": lambda r, dt: (lambda input: F.interpolate(input, size=(7, 9)),
                                               dict(input=_n(r, dt, 2, 3, 5, 4)), {}),
    "interpolate-nearest-x2": lambda r, dt: (lambda input: F.interpolate(input, scale_factor=2),
                                             dict(input=_n(r, dt, 1, 2, 3, 4)), {}),
    "interpolate-bilinear": lambda r, dt: (lambda input: F.interpolate(input, size=(7, 3), mode="bilinear"),
                                           dict(input=_n(r, dt, 2, 3, 5, 4)), {}),
    "interpolate-bilinear-corners": lambda r, dt: (
        lambda input: F.interpolate(input, scale_factor=1.7, mode="bilinear", align_corners=True),
        dict(input=_n(r, dt, 1, 2, 4, 5)), {}),
    "cross_entropy-mean": lambda r, dt: _ce(r, dt, "mean"),
    "cross_entropy-none": lambda r, dt: _ce(r, dt, "none"),
    "bce_with_logits-mean": lambda r, dt: _bce(r, dt, "mean"),
    "bce_with_logits-sum": lambda r, dt: _bce(r, dt, "sum"),
    "smooth_l1_loss": lambda r, dt: (lambda input, target: F.smooth_l1_loss(input, target, "sum", beta=0.5),
                                     dict(input=_n(r, dt, 7, 4), target=_n(r, dt, 7, 4)), {}),
    "smooth_l1_loss-beta0": lambda r, dt: (lambda input, target: F.smooth_l1_loss(input, target, "none", beta=0.0),
                                           dict(input=_n(r, dt, 7, 4), target=_n(r, dt, 7, 4)), {}),
    "l1_loss": lambda r, dt: (F.l1_loss, dict(input=_n(r, dt, 7, 4), target=_n(r, dt, 7, 4)), {}),
    "roi_align": lambda r, dt: (lambda input, boxes: roi_align(input, boxes, (3, 2), 0.5, -1, aligned=True),
                                dict(input=features(r, dt)), dict(boxes=[boxes(r, 3, dt, 20), boxes(r, 2, dt, 20)])),
    "roi_pool": lambda r, dt: (lambda input, boxes: roi_pool(input, boxes, (3, 2), 0.5), dict(input=features(r, dt)),
                               dict(boxes=[boxes(r, 3, dt, 20), boxes(r, 2, dt, 20)])),
    "MultiScaleRoIAlign": _pool_level_maps,
}


def forward_backward(fn, leaves, consts, device, case=None, seed=1):
    """``fn(**leaves as Tensors, **consts)``, then backward with a seeded gradient (the gradients of
    several outputs are summed through the tape); returns outputs, leaf gradients, constants after.
    On the device, records the syncs of the forward and the backward as ``SYNCS[case]``."""
    move = to_dev if device else (lambda a: a)
    tensors = {k: Tensor(move(a), requires_grad=True) for k, a in leaves.items()}
    consts = move(consts)
    with counting() as forward:
        out = fn(**tensors, **consts)
    outs = [out] if isinstance(out, Tensor) else list(out.values()) if isinstance(out, dict) else list(out)
    rng = np.random.default_rng(seed)
    grads = [move(rng.standard_normal(o.shape).astype(o.dtype)) for o in outs]
    with counting() as backward:
        if len(outs) == 1:
            outs[0].backward(grads[0])
        else:
            total = F.sum(F.mul(outs[0], grads[0]))
            for o, g in zip(outs[1:], grads[1:], strict=True):
                total = F.add(total, F.sum(F.mul(o, g)))
            total.backward()
    if device:
        SYNCS[case] = (forward.syncs, backward.syncs)
        assert forward.to_host + backward.to_host == 0, f"{case}: explicit copies to the host"
    return out, {k: t.grad for k, t in tensors.items()}, consts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(LAYER_CASES))
def test_layer_forward_and_backward_on_device_equal_numpy(fake_cupy, name, dtype):
    build = LAYER_CASES[name]
    host = forward_backward(*build(np.random.default_rng(0), dtype), device=False)
    dev = forward_backward(*build(np.random.default_rng(0), dtype), device=True, case=f"{name}-{np.dtype(dtype)}")
    for what, h, d in zip(("output", "grad", "constants after"), host, dev, strict=True):
        assert_same(h, d, f"{name} {what}")


# --- modules: name -> build(seed, dtype) -> (module, input shape) -----------------------------------
def _randomised(module, seed=5):
    rng = np.random.default_rng(seed)
    for _, m in module.named_modules():
        for name, b in list(m._buffers.items()):
            if b.dtype.kind == "f":
                m._buffers[name] = (np.abs(rng.standard_normal(b.shape)) + 0.5).astype(b.dtype)
    return module


def _tiny_backbone(dtype):
    c = configs.tiny(min_size=64, max_size=64)
    return resnet_fpn_backbone(c.backbone, trainable_layers=c.trainable_backbone_layers, layers=c.backbone_layers,
                               width=c.backbone_width, out_channels=c.fpn_channels, rng=0, dtype=dtype,
                               norm_layer=nn.FrozenBatchNorm2d if c.frozen_batch_norm else nn.BatchNorm2d)


MODULE_CASES = {
    "Conv2d": lambda dt: (nn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0, dtype=dt), (2, 3, 7, 6)),
    "ConvTranspose2d": lambda dt: (nn.ConvTranspose2d(3, 4, 3, 2, 1, output_padding=1, rng=0, dtype=dt),
                                   (2, 3, 5, 4)),
    "Linear": lambda dt: (nn.Linear(6, 3, rng=0, dtype=dt), (4, 6)),
    "FrozenBatchNorm2d": lambda dt: (_randomised(nn.FrozenBatchNorm2d(3, dtype=dt)), (2, 3, 4, 5)),
    "BatchNorm2d-train": lambda dt: (_randomised(nn.BatchNorm2d(3, dtype=dt)), (4, 3, 5, 5)),
    "BatchNorm2d-eval": lambda dt: (_randomised(nn.BatchNorm2d(3, dtype=dt)).eval(), (4, 3, 5, 5)),
    "ReLU": lambda dt: (nn.ReLU(), (2, 3, 4)),
    "MaxPool2d": lambda dt: (nn.MaxPool2d(3, 2, 1), (2, 3, 9, 8)),
    "Sequential": lambda dt: (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, rng=0, dtype=dt), nn.BatchNorm2d(4, dtype=dt),
                                            nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 2, 1, rng=1, dtype=dt)),
                              (2, 3, 8, 8)),
    "backbone-tiny-train": lambda dt: (_tiny_backbone(dt), (1, 3, 64, 64)),
    "backbone-tiny-eval": lambda dt: (_randomised(_tiny_backbone(dt)).eval(), (1, 3, 64, 64)),
}


def module_state(module):
    return ({n: p.data for n, p in module.named_parameters()}, {n: p.grad for n, p in module.named_parameters()},
            dict(module.named_buffers()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(MODULE_CASES))
def test_module_on_device_equals_numpy(fake_cupy, name, dtype):
    x = np.random.default_rng(0).standard_normal(MODULE_CASES[name](dtype)[1]).astype(dtype)
    host_module, dev_module = MODULE_CASES[name](dtype)[0], MODULE_CASES[name](dtype)[0].to("cuda")
    assert dev_module.device == ("cuda" if any(a for a in module_state(dev_module)[::2]) else "cpu")
    host = forward_backward(host_module, dict(x=x), {}, device=False)
    dev = forward_backward(dev_module, dict(x=x), {}, device=True, case=f"{name}-{np.dtype(dtype)}")
    assert_same(host[:2], dev[:2], f"{name} output, input grad")
    for what, h, d in zip(("parameter", "parameter grad", "buffer"), module_state(host_module),
                          module_state(dev_module), strict=True):
        assert_same(h, d, f"{name} {what}")


# --- optimiser ----------------------------------------------------------------------------------
SGD_SETTINGS = {
    "plain": dict(lr=0.1),
    "momentum-decay": dict(lr=0.1, momentum=0.9, weight_decay=1e-2),
    "nesterov": dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
    "dampening": dict(lr=0.1, momentum=0.5, dampening=0.3),
}


def _net(dtype):
    return nn.Sequential(nn.Linear(6, 5, rng=0, dtype=dtype), nn.ReLU(), nn.Linear(5, 3, rng=1, dtype=dtype))


def _batch(step, dtype, device):
    rng = np.random.default_rng(100 + step)
    x, t = rng.standard_normal((8, 6)).astype(dtype), rng.integers(0, 3, 8)
    return (to_dev(x), to_dev(t)) if device else (x, t)


def train(model, opt, steps, dtype, device, sched=None, first=0):
    lrs = []
    for step in range(first, first + steps):
        opt.zero_grad()
        x, t = _batch(step, dtype, device)
        F.cross_entropy(model(x), t).backward()
        opt.step()
        if sched is not None:
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def buffers(opt, model):
    return [opt.state[id(p)]["momentum_buffer"] for p in model.parameters() if id(p) in opt.state]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("setting", sorted(SGD_SETTINGS))
def test_sgd_steps_on_device_equal_host(fake_cupy, setting, dtype):
    runs = []
    for device in (False, True):
        model = _net(dtype).to("cuda") if device else _net(dtype)
        opt = SGD(model.parameters(), **SGD_SETTINGS[setting])
        sched = WarmupMultiStepLR(opt, milestones=[2], gamma=0.5, warmup_factor=0.1, warmup_iters=2)
        lrs = train(model, opt, 4, dtype, device, sched)
        with fake_cupy.counting() as counts:
            opt.step()  # once more, with the last gradients
        runs.append((lrs, dict(model.state_dict()), buffers(opt, model)))
    SYNCS[f"SGD.step-{setting}-{np.dtype(dtype)}"] = counts.syncs
    assert counts.to_host == 0
    assert all(type(lr) is float for lr in runs[1][0]), "the schedule's lr must stay a Python float"
    assert_same(runs[0], runs[1], f"SGD {setting}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("how", ["model.to", "load_state_dict"])
def test_sgd_host_momentum_continues_on_the_device(fake_cupy, how, dtype):
    """Two steps on the host, then two on the device, equal four on the host: the host momentum
    buffers follow the parameters (``SGD.step`` moves them after ``model.to("cuda")``;
    ``SGD.load_state_dict`` puts a checkpoint's host buffers on the parameters' device)."""
    settings = SGD_SETTINGS["nesterov"]
    ref = _net(dtype)
    ref_opt = SGD(ref.parameters(), **settings)
    train(ref, ref_opt, 4, dtype, device=False)
    model = _net(dtype)
    opt = SGD(model.parameters(), **settings)
    train(model, opt, 2, dtype, device=False)
    assert all(isinstance(b, np.ndarray) for b in buffers(opt, model))
    if how == "model.to":
        model.to("cuda")
    else:
        checkpoint, model = (model.state_dict(), opt.state_dict()), _net(dtype).to("cuda")
        model.load_state_dict(checkpoint[0])
        opt = SGD(model.parameters(), **settings)
        opt.load_state_dict(checkpoint[1])
        assert all(backend.is_cupy_array(b) for b in buffers(opt, model))
    train(model, opt, 2, dtype, device=True, first=2)
    assert_same((dict(ref.state_dict()), buffers(ref_opt, ref)), (dict(model.state_dict()), buffers(opt, model)), how)
