"""The ``[yolo]`` training loss on the GPU as two kernels that read the truth table where it is
(the device), for the options of pj's loss and most of AlexeyAB's (``supports``): no host
planning, no host copy, fixed shapes -- so a CUDA graph captures the whole training pass.

The function is yololoss.yolo_loss's (its docstring states it), computed the way pj's
forward_yolo_layer loops (pj:src/yolo_layer.c):

* ``yolo_objectness``, a thread per anchor slot and cell: the predicted box's best IoU with a
  live truth of its image (the rows before the first with x == 0); objectness delta
  -obj_normalizer obj, or 0 above ignore_thresh;
* ``yolo_truths``, a thread per image: its truths in order, each choosing the best of all
  anchors by the IoU of centred shapes (and, below iou_thresh, every other anchor that passes),
  writing box, objectness and class deltas at the anchor's first slot in the mask.  One thread
  walks an image's truths in Darknet's order, so a later truth of a cell overwrites an earlier
  one's box and objectness, and pj's class rule (delta_yolo_class: every class unless the
  cell's class-0 delta is already nonzero, then only the truth's class) reads what the earlier
  truths left -- yololoss's rounds, sequentially.  Per image it sums the report's statistics
  (IoU, class and objectness probability, recalls, count).

Float64 throughout, as yololoss; ``tests/test_yolo_kernel.py`` compiles this source with the
host's C++ compiler and checks it against yololoss.yolo_loss on the CPU, and the GPU tests
check the CuPy path against the NumPy one.
"""

import numpy as np

from ..kernels import _BOX_IOU, _kernel

#: what ``supports`` refuses, with why (yololoss.yolo_loss computes those)
_OTHER_PATH = (
    ("iou_loss", lambda v: v != "mse", "iou_loss= other than mse"),
    ("truth_thresh", lambda v: v < 1, "truth_thresh < 1"),
    ("objectness_smooth", bool, "objectness_smooth"),
    ("focal_loss", bool, "focal_loss"),
)

SOURCE = _BOX_IOU + r"""
__device__ double shape_iou(double aw, double ah, double tw, double th)
{
    // box.score's IoU of (0, 0, aw, ah) and (0, 0, tw, th): pj box_iou's edges and overlaps
    double al = 0 - aw / 2, ar = 0 + aw / 2, at = 0 - ah / 2, ab = 0 + ah / 2;
    double bl = 0 - tw / 2, br = 0 + tw / 2, bt = 0 - th / 2, bb = 0 + th / 2;
    double ow = (ar < br ? ar : br) - (al > bl ? al : bl);
    double oh = (ab < bb ? ab : bb) - (at > bt ? at : bt);
    double inter = (ow < 0 || oh < 0) ? 0.0 : ow * oh;
    double uni = aw * ah + tw * th - inter;
    return uni > 0 ? inter / uni : 0.0;
}

__device__ int cell_of(double v, int size)
{
    // pj's (int)(x * w), kept inside the grid (yololoss._cell_of)
    double c = trunc(v * size);
    return (int)(c < 0 ? 0 : (c > size - 1 ? size - 1 : c));
}

extern "C" __global__
void yolo_objectness(const double* o, double* d, const double* truth, const double* anchors,
                     const int* mask, long long cells, int n, int planes, int h, int w, int k,
                     double uw, double uh, int new_coords, double ignore_thresh,
                     double obj_normalizer)
{
    long long id = blockIdx.x * (long long)blockDim.x + threadIdx.x;      // (b, slot, j, i)
    if (id >= cells) return;
    int i = id % w, j = (id / w) % h, a = (id / ((long long)w * h)) % n;
    long long b = id / ((long long)w * h * n);
    long long plane = (long long)h * w;
    long long at = (b * n + a) * planes * plane + (long long)j * w + i;
    double best = __longlong_as_double(0xfff0000000000000LL);      // -inf: no live truth
    for (int q = 0; q < k; ++q) {
        const double* t = truth + (b * k + q) * 5;
        if (t[0] == 0) break;
        double v = pred_iou(o + at, plane, i, j, w, h, anchors[2 * mask[a]],
                            anchors[2 * mask[a] + 1], uw, uh, t, new_coords);
        if (v != v) { best = v; break; }
        if (v > best) best = v;
    }
    d[at + 4 * plane] = best > ignore_thresh ? 0.0 : -obj_normalizer * o[at + 4 * plane];
}

extern "C" __global__
void yolo_truths(const double* o, double* d, const double* truth, const double* anchors,
                 const int* mask, const double* multipliers, double* stats, int batch, int n,
                 int total, int planes, int h, int w, int k, int classes, double uw, double uh,
                 int new_coords, double iou_thresh, double iou_normalizer,
                 double obj_normalizer, double cls_normalizer, double eps)
{
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    long long plane = (long long)h * w;
    double s_iou = 0, s_cls = 0, s_obj = 0, s_50 = 0, s_75 = 0, count = 0;
    for (int q = 0; q < k; ++q) {
        const double* t = truth + ((long long)b * k + q) * 5;
        if (t[0] == 0) break;
        int i = cell_of(t[0], w), j = cell_of(t[1], h);
        double c = trunc(t[4]);
        int cls = (int)(c < 0 ? 0 : (c > classes - 1 ? classes - 1 : c));
        double m = multipliers ? multipliers[cls] : 1.0;
        int best_n = 0;                 // argmax: the first best anchor, 0 when none overlaps
        double best = 0;
        for (int a = 0; a < total; ++a) {
            double v = shape_iou(anchors[2 * a] / uw, anchors[2 * a + 1] / uh, t[2], t[3]);
            if (a == 0 || v > best) { best = v; best_n = a; }
        }
        for (int s = 0; s < n; ++s) {
            int an = mask[s], first = 1;
            for (int r = 0; r < s; ++r)
                if (mask[r] == an) first = 0;
            if (!first) continue;
            double aw = anchors[2 * an], ah = anchors[2 * an + 1];
            if (an != best_n && !(shape_iou(aw / uw, ah / uh, t[2], t[3]) > iou_thresh))
                continue;
            long long at = (((long long)b * n + s) * planes * h + j) * w + i;
            const double* ob = o + at;
            double* db = d + at;
            double box_scale = (2 - t[2] * t[3]) * iou_normalizer * m;
            double target[4] = {t[0] * w - i, t[1] * h - j, 0, 0};
            if (new_coords) {
                target[2] = sqrt(t[2] * uw / (4 * aw));
                target[3] = sqrt(t[3] * uh / (4 * ah));
            } else {
                target[2] = log(t[2] * uw / aw);
                target[3] = log(t[3] * uh / ah);
            }
            for (int p = 0; p < 4; ++p)
                db[p * plane] = box_scale * (target[p] - ob[p * plane]);
            db[4 * plane] = m * obj_normalizer * (1 - ob[4 * plane]);
            double p_true = ob[(5 + cls) * plane];
            double hit = cls_normalizer * ((1 - eps + 0.5 * eps) - p_true) * m;
            if (db[5 * plane] == 0) {
                for (int p = 0; p < classes; ++p)
                    db[(5 + p) * plane] = p == cls ? hit
                        : cls_normalizer * (0.5 * eps - ob[(5 + p) * plane]);
            } else {
                db[(5 + cls) * plane] = hit;
            }
            double v = pred_iou(ob, plane, i, j, w, h, aw, ah, uw, uh, t, new_coords);
            s_iou += v;
            s_cls += p_true;
            s_obj += ob[4 * plane];
            s_50 += v > .5;
            s_75 += v > .75;
            count += 1;
        }
    }
    double* out = stats + 6 * (long long)b;
    out[0] = s_iou; out[1] = s_cls; out[2] = s_obj; out[3] = s_50; out[4] = s_75; out[5] = count;
}
"""

_CONSTANTS = {}     # (device, anchors, mask, multipliers) -> their device arrays
_BLOCK = {"yolo_objectness": 256, "yolo_truths": 64}


def supports(layer):
    """Whether ``yolo_loss`` computes this layer's loss (else yololoss.yolo_loss does)."""
    if layer.iou_thresh < 1 and layer.iou_thresh_kind in ("giou", "ciou"):
        return False
    return not any(test(getattr(layer, key)) for key, test, _ in _OTHER_PATH)


def _constants(xp, layer):
    """The layer's anchors (all), mask and class multipliers (or None) as ``xp`` arrays; on
    the GPU made once per device (not inside a CUDA graph capture: the warm-up passes run
    eagerly first) and shared by the network's resized copies."""
    multipliers = layer.class_multipliers
    key = (None if xp is np else xp.cuda.Device().id, tuple(layer.anchors), tuple(layer.mask),
           None if multipliers is None else tuple(np.asarray(multipliers, np.float64)))
    found = _CONSTANTS.get(key) if xp is not np else None
    if found is None:
        found = (xp.asarray(np.asarray(layer.anchors, np.float64)),
                 xp.asarray(np.asarray(layer.mask, np.int32)),
                 None if multipliers is None else xp.asarray(np.asarray(multipliers,
                                                                        np.float64)))
        if xp is not np:
            _CONSTANTS[key] = found
    return found


def _launch_cuda(name, threads, args):
    block = _BLOCK[name]
    _kernel(name, SOURCE)(((threads + block - 1) // block,), (block,), args)


def yolo_loss(layer, output, truth, launch=_launch_cuda):
    """yololoss.yolo_loss of ``output`` with the truth table ``truth`` on its device ((B, K x 5):
    rows x, y, w, h, class): the deltas (``output``'s shape and dtype) and the ``STATS`` array,
    with no host work that depends on the values.  ``launch(name, threads, args)`` runs a
    kernel of ``SOURCE`` (CuPy's by default; the tests' runs the C compiler's build)."""
    from .yololoss import _Grid
    i32, f64 = np.int32, np.float64
    g = _Grid(output, layer.n, 5 + layer.classes, layer.h, layer.w)
    xp = g.xp
    t = xp.ascontiguousarray(truth.reshape(g.batch, -1, 5), dtype=xp.float64)
    anchors, mask, multipliers = _constants(xp, layer)
    uw, uh, new_coords = f64(layer.net_w), f64(layer.net_h), i32(bool(layer.new_coords))
    cells = g.batch * g.n * g.h * g.w
    geometry = (i32(g.planes), i32(g.h), i32(g.w), i32(t.shape[1]))
    launch("yolo_objectness", cells,
           (g.o, g.d, t, anchors, mask, np.int64(cells), i32(g.n), *geometry, uw, uh,
            new_coords, f64(layer.ignore_thresh), f64(layer.obj_normalizer)))
    stats = xp.empty((g.batch, 6), xp.float64)
    launch("yolo_truths", g.batch,
           (g.o, g.d, t, anchors, mask, np.uint64(0) if multipliers is None else multipliers,
            stats, i32(g.batch), i32(g.n), i32(len(layer.anchors) // 2), *geometry,
            i32(layer.classes), uw, uh, new_coords, f64(layer.iou_thresh),
            f64(layer.iou_normalizer), f64(layer.obj_normalizer), f64(layer.cls_normalizer),
            f64(layer.label_smooth_eps)))
    sums = stats.sum(axis=0)
    totals = xp.concatenate(((g.d * g.d).sum()[None], sums[:3], g.o[:, :, 4].sum()[None],
                             sums[3:]))
    return g.d.reshape(output.shape).astype(output.dtype), totals
