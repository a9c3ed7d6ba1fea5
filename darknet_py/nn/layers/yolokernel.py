"""The ``[yolo]`` and ``[region]`` training losses on the GPU as kernels that read the truth
table where it is (the device): no host planning, no host copy, fixed shapes -- so a CUDA graph
captures the whole training pass.  Every option of pj's and AlexeyAB's [yolo], and pj's
[region] but ``tree=``.

The functions are yololoss's (its docstring states them), computed the way pj's
forward_yolo_layer and forward_region_layer loop (pj:src/yolo_layer.c, src/region_layer.c):

* ``yolo_cells``, a thread per image, anchor slot and cell: the predicted box's best IoU with a
  live truth of its image (the rows before the first with x == 0), the objectness delta
  -obj_normalizer obj, or 0 above ignore_thresh (AlexeyAB's objectness_smooth: IoU targets);
  above truth_thresh the deltas of that truth (box, objectness, every class);
* ``yolo_truths``, a thread per image: its truths in order, each choosing the best of all
  anchors by the IoU of centred shapes (and, below iou_thresh, every other anchor that passes),
  writing box (mse, or AlexeyAB's iou_loss deltas: ``dx_box_iou`` in float as AB's C, as
  box.dx_box_iou), objectness and class deltas (label_smooth_eps, counters_per_class,
  focal_loss) at the anchor's first slot in the mask.  One thread walks an image's truths in
  Darknet's order, so a later truth of a cell overwrites an earlier one's box and objectness,
  and pj's class rule (delta_yolo_class: every class unless the cell's class-0 delta is
  already nonzero, then only the truth's class) reads what the earlier truths left --
  yololoss's rounds, sequentially.  Per image it sums the report's statistics (IoU, class and
  objectness probability, recalls, count);
* ``region_cells`` and ``region_truths`` the same for [region]: noobject_scale and the anchor
  prior while seen < 12800 per cell; per truth the anchor by shape (bias_match) or by the
  cell's predicted shapes, rescore, background, softmax, ``map=``.

Float64 throughout, as yololoss (the iou_loss deltas in float, as AB's).  The source is C that
a C compiler builds too: ``tests/test_yolo_kernel.py`` runs it thread by thread on the CPU
against yololoss, and on the GPU through CuPy.
"""

import math

import numpy as np

from ..kernels import _BOX_IOU, _kernel
from .yololoss import _Grid

#: the kernels' scalar arguments, in order: a head's loss options and its geometry (one C
#: struct inside the kernels: ``Options`` for [yolo], ``RegionOptions`` for [region])
_INT_OPTIONS = ("n", "total", "planes", "h", "w", "k", "classes", "new_coords", "kind", "clip",
                "focal", "smooth", "thresh", "pass_kind")
_FLOAT_OPTIONS = ("uw", "uh", "ignore_thresh", "truth_thresh", "iou_thresh", "iou_normalizer",
                  "obj_normalizer", "cls_normalizer", "eps", "max_delta")
_REGION_INT = ("n", "planes", "h", "w", "k", "classes", "bias_match", "softmax", "background",
               "rescore", "prior", "map_len")
_REGION_FLOAT = ("thresh", "coord_scale", "object_scale", "noobject_scale", "class_scale")


def _struct(name, prefix, ints, floats):
    """The C struct of a kernel's options and the macros of its parameters and initialiser."""
    return ("struct " + name + " {\n" + "".join(f"    int {n};\n" for n in ints) +
            "".join(f"    double {n};\n" for n in floats) + "};\n"
            f"#define {prefix}_PARAMS " + ", ".join([f"int {n}" for n in ints] +
                                                   [f"double {n}" for n in floats]) + "\n"
            f"#define {prefix}_INIT {{" + ", ".join(ints + floats) + "}\n")


_DECLARATIONS = _struct("Options", "OPTION", _INT_OPTIONS, _FLOAT_OPTIONS) + \
    _struct("RegionOptions", "REGION", _REGION_INT, _REGION_FLOAT)

SOURCE = _BOX_IOU + _DECLARATIONS + r"""
#define DN_PI 3.141592653589793

__device__ double shape_score(double aw, double ah, double tw, double th, int kind)
{
    // box.score of (0, 0, aw, ah) and (0, 0, tw, th): pj box_iou's edges and overlaps; the
    // giou and ciou terms of iou_thresh_kind (diou's centre term is 0 here)
    double al = 0 - aw / 2, ar = 0 + aw / 2, at = 0 - ah / 2, ab = 0 + ah / 2;
    double bl = 0 - tw / 2, br = 0 + tw / 2, bt = 0 - th / 2, bb = 0 + th / 2;
    double ow = (ar < br ? ar : br) - (al > bl ? al : bl);
    double oh = (ab < bb ? ab : bb) - (at > bt ? at : bt);
    double inter = (ow < 0 || oh < 0) ? 0.0 : ow * oh;
    double uni = aw * ah + tw * th - inter;
    double iou = uni > 0 ? inter / uni : 0.0;
    if (kind == 2) {                        // giou
        double c = ((ar > br ? ar : br) - (al < bl ? al : bl)) *
                   ((ab > bb ? ab : bb) - (at < bt ? at : bt));
        return iou - (c > 0 ? (c - uni) / c : 0.0);
    }
    if (kind == 4) {                        // ciou
        double diff = atan(tw / th) - atan(aw / ah);
        double v = 4 / (DN_PI * DN_PI) * (diff * diff);
        double den = 1 - iou + v;
        return iou - 0.0 - (den > 0 ? v / den : 0.0) * v;
    }
    return iou;
}

enum { MSE, IOU, GIOU, DIOU, CIOU };        // IOU_LOSS_KINDS' order

__device__ void dx_box_iou(const float* p, const float* t, int kind, float* d)
{
    // box.dx_box_iou (AlexeyAB's dx_box_iou, ab:src/box.c): float operation for operation,
    // CIoU's atan terms in double
    float top = p[1] - p[3] / 2, bot = p[1] + p[3] / 2, left = p[0] - p[2] / 2,
          right = p[0] + p[2] / 2;
    float pt = fminf(top, bot), pb = fmaxf(top, bot), pl = fminf(left, right),
          pr = fmaxf(left, right);
    float tt = t[1] - t[3] / 2, tb = t[1] + t[3] / 2, tl = t[0] - t[2] / 2, tr = t[0] + t[2] / 2;
    float X = (pb - pt) * (pr - pl), Xhat = (tb - tt) * (tr - tl);
    float Ih = fminf(pb, tb) - fmaxf(pt, tt), Iw = fminf(pr, tr) - fmaxf(pl, tl);
    float I = Iw * Ih, U = X + Xhat - I;
    float S = (p[0] - t[0]) * (p[0] - t[0]) + (p[1] - t[1]) * (p[1] - t[1]);
    float gCw = fmaxf(pr, tr) - fminf(pl, tl), gCh = fmaxf(pb, tb) - fminf(pt, tt);
    float gC = gCw * gCh;
    // t, b, l, r: d X, d I, d U = dX - dI and d C (GIoU's enclosing area) by the edges
    float dX[4] = {-(pr - pl), pr - pl, -(pb - pt), pb - pt};
    float dI[4] = {pt > tt ? -Iw : 0, pb < tb ? Iw : 0, pl > tl ? -Ih : 0, pr < tr ? Ih : 0};
    float dC[4] = {pt < tt ? -gCw : 0, pb > tb ? gCw : 0, pl < tl ? -gCh : 0,
                   pr > tr ? gCh : 0};
    float dU[4], g[4];
    for (int k = 0; k < 4; ++k) {
        dU[k] = dX[k] - dI[k];
        g[k] = U > 0 ? ((U * dI[k]) - (I * dU[k])) / (U * U) : 0;
    }
    if (!(top < bot)) g[0] = g[1];         // AB's corner selection from the min/max
    if (!(left < right)) g[2] = g[3];
    int apart = (Iw <= 0) || (Ih <= 0);
    if (kind == GIOU) {
        for (int k = 0; k < 4; ++k) {
            float c = ((gC * dU[k]) - (U * dC[k])) / (gC * gC);
            float gi = gC > 0 ? g[k] + c : g[k];
            g[k] = apart ? c : gi;
        }
    }
    // DIoU's enclosing box C = Cw^2 + Ch^2 and its derivatives by x, y, w, h
    float Ct = fminf(p[1] - p[3] / 2, t[1] - t[3] / 2);
    float Cb = fmaxf(p[1] + p[3] / 2, t[1] + t[3] / 2);
    float Cl = fminf(p[0] - p[2] / 2, t[0] - t[2] / 2);
    float Cr = fmaxf(p[0] + p[2] / 2, t[0] + t[2] / 2);
    float Cw = Cr - Cl, Ch = Cb - Ct, C = Cw * Cw + Ch * Ch;
    int up = pt < tt, down = pb > tb, lft = pl < tl, rgt = pr > tr;
    float dCw[4] = {(rgt ? 1.0f : 0.0f) - (lft ? 1.0f : 0.0f), 0,
                    (rgt ? 0.5f : 0.0f) - (lft ? -0.5f : 0.0f), 0};
    float dCh[4] = {0, (down ? 1.0f : 0.0f) - (up ? 1.0f : 0.0f), 0,
                    (down ? 0.5f : 0.0f) - (up ? -0.5f : 0.0f)};
    d[0] = g[2] + g[3]; d[1] = g[0] + g[1]; d[2] = g[3] - g[2]; d[3] = g[1] - g[0];
    if (kind == DIOU || kind == CIOU) {
        float CC = C * C, span[4], terms[4];
        for (int k = 0; k < 4; ++k)
            span[k] = (2 * Cw * dCw[k] + 2 * Ch * dCh[k]) * S;
        terms[0] = (2 * (t[0] - p[0]) * C - span[0]) / CC;
        terms[1] = (2 * (t[1] - p[1]) * C - span[1]) / CC;
        terms[2] = span[2] / CC;
        terms[3] = span[3] / CC;
        if (kind == CIOU) {
            double diff = atan((double)(t[2] / t[3])) - atan((double)(p[2] / p[3]));
            float ar_loss = (float)(4 / (DN_PI * DN_PI) * diff * diff);
            float alpha = (float)((double)ar_loss / ((double)(1 - I / U + ar_loss) + 0.000001));
            float ar_dw = (float)(8 / (DN_PI * DN_PI) * diff * (double)p[3]);
            float ar_dh = (float)(-8 / (DN_PI * DN_PI) * diff * (double)p[2]);
            terms[2] = terms[2] + alpha * ar_dw;
            terms[3] = terms[3] + alpha * ar_dh;
        }
        for (int k = 0; k < 4; ++k) {
            float di = C > 0 ? d[k] + terms[k] : d[k];
            d[k] = apart ? terms[k] : di;
        }
    }
}

__device__ void iou_box_delta(const double* ob, long long plane, int i, int j, int w, int h,
                              double aw, double ah, double uw, double uh, const double* t,
                              int new_coords, int kind, double iou_normalizer, double m,
                              int clip, double max_delta, double* out)
{
    // yololoss._iou_box_delta (AB delta_yolo_box's iou_loss deltas), float as AB's C
    float o[4], tf[4], p[4], d[4];
    for (int k = 0; k < 4; ++k) {
        o[k] = (float)ob[k * plane];
        tf[k] = (float)t[k];
    }
    float faw = (float)aw, fah = (float)ah;
    p[0] = ((float)i + o[0]) / (float)w;
    p[1] = ((float)j + o[1]) / (float)h;
    if (new_coords) {
        p[2] = o[2] * o[2] * 4.0f * faw / (float)uw;
        p[3] = o[3] * o[3] * 4.0f * fah / (float)uh;
    } else {
        p[2] = (float)(exp((double)o[2]) * (double)faw / uw);
        p[3] = (float)(exp((double)o[3]) * (double)fah / uh);
    }
    if (p[2] == 0) p[2] = 1;                // "avoid nan in dx_box_iou"
    if (p[3] == 0) p[3] = 1;
    dx_box_iou(p, tf, kind, d);
    if (!new_coords) {
        d[2] = (float)((double)d[2] * exp((double)o[2]));
        d[3] = (float)((double)d[3] * exp((double)o[3]));
    }
    float norm = (float)iou_normalizer * (float)m, top = (float)max_delta;
    for (int k = 0; k < 4; ++k) {
        float v = d[k] * norm;
        if (v - v != 0) v = 0;             // NaN, inf: AB's fix_nan_inf
        if (clip) v = v < -top ? -top : (v > top ? top : v);
        out[k] = v;
    }
}

__device__ void box_delta(const double* ob, long long plane, int i, int j, int w, int h,
                          double aw, double ah, double uw, double uh, const double* t,
                          int new_coords, int kind, double iou_normalizer, double m, int clip,
                          double max_delta, double* out)
{
    // yololoss._box_delta: mse (2 - w h) iou_normalizer m (target - o), else the iou_loss's
    if (kind != MSE) {
        iou_box_delta(ob, plane, i, j, w, h, aw, ah, uw, uh, t, new_coords, kind,
                      iou_normalizer, m, clip, max_delta, out);
        return;
    }
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
        out[p] = box_scale * (target[p] - ob[p * plane]);
}

__device__ void every_class(const double* ob, double* db, long long plane, int classes,
                            int cls, double p_true, double scale, double m, double eps, int focal)
{
    // yololoss._yolo_classes: pj delta_yolo_class's every-class write, AB's label_smooth_eps,
    // counters_per_class m and focal_loss
    double grad = 0;
    if (focal) {
        double pt = (double)((float)p_true + 1e-15f);
        grad = -(1 - pt) * (2 * pt * log(pt) + pt - 1);
    }
    for (int c = 0; c < classes; ++c) {
        double p = ob[(5 + c) * plane];
        if (focal)
            db[(5 + c) * plane] = c == cls ? scale * (1 - p) * 0.5 * grad
                                           : scale * (0 - p) * 0.5 * grad;
        else
            db[(5 + c) * plane] = c == cls ? scale * ((1 - eps + 0.5 * eps) - p) * m
                                           : scale * (0.5 * eps - p);
    }
}

__device__ int cell_of(double v, int size)
{
    // pj's (int)(x * w), kept inside the grid (yololoss._cell_of)
    double c = trunc(v * size);
    return (int)(c < 0 ? 0 : (c > size - 1 ? size - 1 : c));
}

__device__ int class_of(double v, int classes)
{
    double c = trunc(v), top = classes > 1 ? classes - 1 : 0;       // yololoss._classes
    return (int)(c < 0 ? 0 : (c > top ? top : c));
}

__device__ long long column(long long b, int n, int a, int planes, int h, int w, int j, int i)
{
    // the flat index of plane 0 of image b's anchor slot a at cell (j, i)
    return ((b * n + a) * planes * h + j) * (long long)w + i;
}

struct Slot {                   // a cell thread's image, anchor slot and cell
    long long b, plane;
    int a, j, i;
    const double* ob;           // its column of the output: plane p at ob[p * plane]
    double* db;                 // and of the deltas
};

__device__ int slot_of_thread(const double* o, double* d, long long cells, int n, int planes,
                              int h, int w, struct Slot* s)
{
    // the thread's (image, slot, cell) in the output's order; 0 past the last cell
    long long id = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (id >= cells) return 0;
    s->plane = (long long)h * w;
    s->i = id % w;
    s->j = (id / w) % h;
    s->a = (id / s->plane) % n;
    s->b = id / (s->plane * n);
    long long at = column(s->b, n, s->a, planes, h, w, s->j, s->i);
    s->ob = o + at;
    s->db = d + at;
    return 1;
}

struct Stats { double iou, cls, obj, r50, r75, count; };    // an image's report sums

__device__ void count_match(struct Stats* s, double iou, double p_class, double objectness)
{
    s->iou += iou;
    s->cls += p_class;
    s->obj += objectness;
    s->r50 += iou > .5;
    s->r75 += iou > .75;
    s->count += 1;
}

__device__ void store_stats(const struct Stats* s, double* out)
{
    out[0] = s->iou; out[1] = s->cls; out[2] = s->obj;
    out[3] = s->r50; out[4] = s->r75; out[5] = s->count;
}

__device__ double best_iou(const double* ob, long long plane, int i, int j, int w, int h,
                           double aw, double ah, double uw, double uh, const double* truth,
                           int k, int new_coords, int* best_t)
{
    // the predicted box's best IoU with a live truth of its image (rows before the first
    // with x == 0; -inf without one) and the first truth with it (a NaN wins, as NumPy's max)
    double best = __longlong_as_double(0xfff0000000000000LL);
    *best_t = 0;
    for (int r = 0; r < k; ++r) {
        const double* t = truth + (long long)r * 5;
        if (t[0] == 0) break;
        double v = pred_iou(ob, plane, i, j, w, h, aw, ah, uw, uh, t, new_coords);
        if (v != v) { *best_t = r; return v; }
        if (v > best) { best = v; *best_t = r; }
    }
    return best;
}

extern "C" __global__
void yolo_cells(const double* o, double* d, const double* truth, const double* anchors,
                const int* mask, const double* multipliers, long long cells, OPTION_PARAMS)
{
    // a thread per (image, slot, cell): the objectness delta from the box's best IoU with a
    // live truth (ignore_thresh; AB's objectness_smooth), and pj's truth_thresh deltas
    const struct Options q = OPTION_INIT;
    struct Slot s;
    if (!slot_of_thread(o, d, cells, q.n, q.planes, q.h, q.w, &s)) return;
    const double* ob = s.ob;
    double* db = s.db;
    long long plane = s.plane;
    int best_t;
    double aw = anchors[2 * mask[s.a]], ah = anchors[2 * mask[s.a] + 1];
    double best = best_iou(ob, plane, s.i, s.j, q.w, q.h, aw, ah, q.uw, q.uh,
                           truth + s.b * q.k * 5, q.k, q.new_coords, &best_t);
    double no_obj = -q.obj_normalizer * ob[4 * plane];
    if (q.smooth) {
        // AB: the IoU counts where the cell predicts some class above 0.25
        // (compare_yolo_class), and then is the objectness target if that is more
        int any = 0;
        for (int c = 0; c < q.classes; ++c)
            any |= ob[(5 + c) * plane] > 0.25;
        double match = any ? best : 0;
        double smoothed = q.obj_normalizer * (match - ob[4 * plane]);
        double top = (no_obj != no_obj || no_obj > smoothed) ? no_obj : smoothed;   // maximum
        db[4 * plane] = match > q.ignore_thresh ? top : no_obj;
    } else {
        db[4 * plane] = best > q.ignore_thresh ? 0.0 : no_obj;
    }
    if (!(q.thresh && best > q.truth_thresh)) return;
    const double* t = truth + (s.b * q.k + best_t) * 5;     // yololoss._truth_thresh
    int cls = class_of(t[4], q.classes);
    double m = multipliers ? multipliers[cls] : 1.0;
    double box[4];
    box_delta(ob, plane, s.i, s.j, q.w, q.h, aw, ah, q.uw, q.uh, t, q.new_coords, q.kind,
              q.iou_normalizer, m, q.clip, q.max_delta, box);
    for (int p = 0; p < 4; ++p)
        db[p * plane] = box[p];
    double target = q.smooth ? best * best : 1;
    db[4 * plane] = q.obj_normalizer * (target - ob[4 * plane]);
    double p_true = ob[(5 + cls) * plane];
    every_class(ob, db, plane, q.classes, cls, p_true, 1.0, m, q.eps, q.focal);
    if (q.smooth)
        db[(5 + cls) * plane] = m * (target - p_true);
}

extern "C" __global__
void yolo_truths(const double* o, double* d, const double* truth, const double* anchors,
                 const int* mask, const double* multipliers, double* stats, int batch,
                 OPTION_PARAMS)
{
    // a thread per image: its truths in Darknet's order, each writing at its anchors' slots
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    const struct Options q = OPTION_INIT;
    long long plane = (long long)q.h * q.w;
    struct Stats sums = {0, 0, 0, 0, 0, 0};
    for (int r = 0; r < q.k; ++r) {
        const double* t = truth + ((long long)b * q.k + r) * 5;
        if (t[0] == 0) break;
        int i = cell_of(t[0], q.w), j = cell_of(t[1], q.h);
        int cls = class_of(t[4], q.classes);
        double m = multipliers ? multipliers[cls] : 1.0;
        int best_n = 0;                 // argmax: the first best anchor, 0 when none overlaps
        double best = 0;
        for (int a = 0; a < q.total; ++a) {
            double v = shape_score(anchors[2 * a] / q.uw, anchors[2 * a + 1] / q.uh, t[2], t[3],
                                   IOU);
            if (a == 0 || v > best) { best = v; best_n = a; }
        }
        for (int s = 0; s < q.n; ++s) {
            int an = mask[s], first = 1;
            for (int e = 0; e < s; ++e)
                if (mask[e] == an) first = 0;
            if (!first) continue;
            double aw = anchors[2 * an], ah = anchors[2 * an + 1];
            if (an != best_n) {             // iou_thresh: the iou_thresh_kind score where
                double v = shape_score(aw / q.uw, ah / q.uh, t[2], t[3], IOU);  // IoU > 0
                if (v > 0)
                    v = shape_score(aw / q.uw, ah / q.uh, t[2], t[3], q.pass_kind);
                if (!(v > q.iou_thresh))
                    continue;
            }
            long long at = column(b, q.n, s, q.planes, q.h, q.w, j, i);
            const double* ob = o + at;
            double* db = d + at;
            double box[4];
            box_delta(ob, plane, i, j, q.w, q.h, aw, ah, q.uw, q.uh, t, q.new_coords, q.kind,
                      q.iou_normalizer, m, q.clip, q.max_delta, box);
            for (int p = 0; p < 4; ++p)
                db[p * plane] = box[p];
            double obj = m * q.obj_normalizer * (1 - ob[4 * plane]);
            if (!q.smooth || db[4 * plane] == 0)    // AB's objectness_smooth keeps a nonzero
                db[4 * plane] = obj;
            double p_true = ob[(5 + cls) * plane];
            if (db[5 * plane] == 0)
                every_class(ob, db, plane, q.classes, cls, p_true, q.cls_normalizer, m, q.eps,
                            q.focal);
            else
                db[(5 + cls) * plane] = q.cls_normalizer * ((1 - q.eps + 0.5 * q.eps) - p_true)
                                        * m;
            double v = pred_iou(ob, plane, i, j, q.w, q.h, aw, ah, q.uw, q.uh, t, q.new_coords);
            count_match(&sums, v, p_true, ob[4 * plane]);
        }
    }
    store_stats(&sums, stats + 6 * (long long)b);
}

extern "C" __global__
void region_cells(const double* o, double* d, const double* truth, const double* anchors,
                  long long cells, REGION_PARAMS)
{
    // [region], a thread per (image, slot, cell): the objectness delta from the box's best
    // IoU with a live truth (thresh), and while seen < 12800 the anchor prior's box deltas
    const struct RegionOptions q = REGION_INIT;
    struct Slot s;
    if (!slot_of_thread(o, d, cells, q.n, q.planes, q.h, q.w, &s)) return;
    const double* ob = s.ob;
    double* db = s.db;
    long long plane = s.plane;
    int best_t, i = s.i, j = s.j;
    double best = best_iou(ob, plane, i, j, q.w, q.h, anchors[2 * s.a], anchors[2 * s.a + 1],
                           q.w, q.h, truth + s.b * q.k * 5, q.k, 0, &best_t);
    db[4 * plane] = best > q.thresh ? 0.0
                                    : q.noobject_scale * ((q.background ? 1 : 0) - ob[4 * plane]);
    if (q.prior) {                  // the anchor at the cell's centre
        double centre[4] = {((i + .5) / q.w) * q.w - i, ((j + .5) / q.h) * q.h - j, 0.0, 0.0};
        for (int p = 0; p < 4; ++p)
            db[p * plane] = .01 * (centre[p] - ob[p * plane]);
    }
}

extern "C" __global__
void region_truths(const double* o, double* d, const double* truth, const double* anchors,
                   const int* map, double* stats, int batch, REGION_PARAMS)
{
    // [region], a thread per image: its truths in pj's order, each at the anchor whose shape
    // (bias_match: the anchor's, else the cell's predicted one) best fits its own
    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= batch) return;
    const struct RegionOptions q = REGION_INIT;
    long long plane = (long long)q.h * q.w;
    struct Stats sums = {0, 0, 0, 0, 0, 0};
    for (int r = 0; r < q.k; ++r) {
        const double* t = truth + ((long long)b * q.k + r) * 5;
        if (t[0] == 0) break;
        int i = cell_of(t[0], q.w), j = cell_of(t[1], q.h), a = 0;
        double best = 0;
        for (int s = 0; s < q.n; ++s) {
            double sw = anchors[2 * s] / q.w, sh = anchors[2 * s + 1] / q.h;
            if (!q.bias_match) {
                long long cell = column(b, q.n, s, q.planes, q.h, q.w, j, i);
                sw = exp(o[cell + 2 * plane]) * anchors[2 * s] / q.w;
                sh = exp(o[cell + 3 * plane]) * anchors[2 * s + 1] / q.h;
            }
            double v = shape_score(sw, sh, t[2], t[3], IOU);
            if (s == 0 || v > best) { best = v; a = s; }
        }
        long long at = column(b, q.n, a, q.planes, q.h, q.w, j, i);
        const double* ob = o + at;
        double* db = d + at;
        double aw = anchors[2 * a], ah = anchors[2 * a + 1];
        double box_scale = q.coord_scale * (2 - t[2] * t[3]);
        double target[4] = {t[0] * q.w - i, t[1] * q.h - j, log(t[2] * q.w / aw),
                            log(t[3] * q.h / ah)};
        for (int p = 0; p < 4; ++p)
            db[p * plane] = box_scale * (target[p] - ob[p * plane]);
        double v = pred_iou(ob, plane, i, j, q.w, q.h, aw, ah, q.w, q.h, t, 0);
        double obj_target = q.background ? 0 : (q.rescore ? v : 1);
        db[4 * plane] = q.object_scale * (obj_target - ob[4 * plane]);
        int cls = class_of(t[4], q.map_len ? q.map_len : q.classes);    // through map=
        if (q.map_len) {
            cls = map[cls];
            cls = cls < 0 ? 0 : (cls > q.classes - 1 ? q.classes - 1 : cls);
        }
        double cs = q.class_scale, p_true = q.classes > 0 ? ob[(5 + cls) * plane] : 0;
        // pj delta_region_class: every class (softmax: always), else only the truth's once
        // the cell's class-0 delta is nonzero
        int every = q.softmax || q.classes == 0 || db[5 * plane] == 0;
        if (every) {
            for (int c = 0; c < q.classes; ++c) {
                double p = ob[(5 + c) * plane];
                db[(5 + c) * plane] = c == cls ? -cs * p + cs : -cs * p;
            }
        } else {
            db[(5 + cls) * plane] = cs * (1 - p_true);
        }
        // pj counts the class only on an every-class write
        count_match(&sums, v, every ? p_true : 0, ob[4 * plane]);
    }
    store_stats(&sums, stats + 6 * (long long)b);
}
"""

#: the kernels' iou_loss codes, in the order of the enum in SOURCE
IOU_LOSS_KINDS = ("mse", "iou", "giou", "diou", "ciou")
_CONSTANTS = {}     # (device, dtype, bytes) -> the device array
_BLOCK = {"yolo_cells": 256, "yolo_truths": 64, "region_cells": 256, "region_truths": 64}


def _constant(xp, values, dtype):
    """``values`` (anchors, a mask, class multipliers, a map; None stays None) as an ``xp``
    array of ``dtype``.  On the GPU made once per device and value, not inside a CUDA graph
    capture (the warm-up passes run eagerly first): a network's resized copies share them."""
    if values is None:
        return None
    host = np.asarray(values, dtype)
    if xp is np:
        return host
    key = (xp.cuda.Device().id, host.dtype.str, host.shape, host.tobytes())
    found = _CONSTANTS.get(key)
    if found is None:
        found = _CONSTANTS[key] = xp.asarray(host)
    return found


def _pointer(array):
    """A kernel's optional array argument: NULL for None."""
    return np.uint64(0) if array is None else array


def _launch_cuda(name, threads, args):
    block = _BLOCK[name]
    _kernel(name, SOURCE)(((threads + block - 1) // block,), (block,), args)


def _options(layer, g, k):
    """The kernels' scalar arguments (``_INT_OPTIONS``, ``_FLOAT_OPTIONS``) of ``layer``."""
    clip = layer.max_delta != math.inf
    ints = dict(n=g.n, total=len(layer.anchors) // 2, planes=g.planes, h=g.h, w=g.w, k=k,
                classes=layer.classes, new_coords=layer.new_coords,
                kind=IOU_LOSS_KINDS.index(layer.iou_loss), clip=clip, focal=layer.focal_loss,
                smooth=layer.objectness_smooth, thresh=layer.truth_thresh < 1,
                pass_kind=IOU_LOSS_KINDS.index(layer.iou_thresh_kind)
                if layer.iou_thresh_kind in IOU_LOSS_KINDS else 1)
    floats = dict(uw=layer.net_w, uh=layer.net_h, ignore_thresh=layer.ignore_thresh,
                  truth_thresh=layer.truth_thresh, iou_thresh=layer.iou_thresh,
                  iou_normalizer=layer.iou_normalizer, obj_normalizer=layer.obj_normalizer,
                  cls_normalizer=layer.cls_normalizer, eps=layer.label_smooth_eps,
                  max_delta=layer.max_delta if clip else 0.0)
    return tuple(np.int32(int(ints[n])) for n in _INT_OPTIONS) + \
        tuple(np.float64(floats[n]) for n in _FLOAT_OPTIONS)


def yolo_loss(layer, output, truth, launch=_launch_cuda):
    """yololoss.yolo_loss of ``output`` with the truth table ``truth`` on its device ((B, K x 5):
    rows x, y, w, h, class): the deltas (``output``'s shape and dtype) and the ``STATS`` array,
    with no host work that depends on the values.  ``launch(name, threads, args)`` runs a
    kernel of ``SOURCE`` (CuPy's by default; the tests' runs the C compiler's build)."""
    g = _Grid(output, layer.n, 5 + layer.classes, layer.h, layer.w)
    xp = g.xp
    t = xp.ascontiguousarray(truth.reshape(g.batch, -1, 5), dtype=xp.float64)
    anchors = _constant(xp, layer.anchors, np.float64)
    mask = _constant(xp, layer.mask, np.int32)
    multipliers = _pointer(_constant(xp, layer.class_multipliers, np.float64))     # NULL: 1
    options = _options(layer, g, t.shape[1])
    cells = g.batch * g.n * g.h * g.w
    launch("yolo_cells", cells,
           (g.o, g.d, t, anchors, mask, multipliers, np.int64(cells), *options))
    stats = xp.empty((g.batch, 6), xp.float64)
    launch("yolo_truths", g.batch,
           (g.o, g.d, t, anchors, mask, multipliers, stats, np.int32(g.batch), *options))
    return _finish(g, output, stats)


def region_loss(layer, output, truth, seen, launch=_launch_cuda):
    """yololoss.region_loss of ``output`` (a [region] without ``tree=``) with the truth table
    ``truth`` on its device; ``seen``: images seen, this mini-batch's included."""
    g = _Grid(output, layer.n, layer.coords + 1 + layer.classes, layer.h, layer.w)
    xp = g.xp
    # pj's region loops stop at 30 truths
    t = xp.ascontiguousarray(truth.reshape(g.batch, -1, 5)[:, :30], dtype=xp.float64)
    anchors = _constant(xp, layer.anchors, np.float64)
    table = _constant(xp, layer.map, np.int32)
    ints = dict(n=g.n, planes=g.planes, h=g.h, w=g.w, k=t.shape[1], classes=layer.classes,
                bias_match=layer.bias_match, softmax=layer.softmax,
                background=layer.background, rescore=layer.rescore, prior=seen < 12800,
                map_len=0 if table is None else len(table))
    options = tuple(np.int32(int(ints[n])) for n in _REGION_INT) + \
        tuple(np.float64(getattr(layer, n)) for n in _REGION_FLOAT)
    cells = g.batch * g.n * g.h * g.w
    launch("region_cells", cells, (g.o, g.d, t, anchors, np.int64(cells), *options))
    stats = xp.empty((g.batch, 6), xp.float64)
    launch("region_truths", g.batch,
           (g.o, g.d, t, anchors, _pointer(table), stats, np.int32(g.batch), *options))
    return _finish(g, output, stats)


def _finish(g, output, stats):
    """The deltas in ``output``'s shape and dtype, and the ``STATS`` array from the images'
    sums (IoU, class, objectness, recall, recall75, count)."""
    xp = g.xp
    sums = stats.sum(axis=0)
    totals = xp.concatenate(((g.d * g.d).sum()[None], sums[:3], g.o[:, :, 4].sum()[None],
                             sums[3:]))
    return g.d.reshape(output.shape).astype(output.dtype), totals
