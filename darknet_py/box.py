"""IoU-family box losses for [yolo] training (AlexeyAB's iou_loss = iou | giou | diou | ciou).

For a predicted box p and a truth t (centre x, y and size w, h, image-relative) the loss is
1 - score with

    iou  = I / U
    giou = iou - (C - U) / C                         C: area of the smallest enclosing box
    diou = iou - rho^2 / c^2                         rho: centre distance, c: enclosing diagonal
    ciou = diou - alpha * v,  v = 4/pi^2 (atan(wt/ht) - atan(w/h))^2,
                              alpha = v / (1 - iou + v), held constant (as the CIoU paper)

``score_gradient`` returns d score / d(x, y, w, h) of the prediction, exactly (darknet_py's own
derivation; AlexeyAB's dx_box_iou uses its own approximations, e.g. it scales the w/h terms by
exp(tw) without the anchor factor).  Where a min/max is tied the one-sided derivative is used.
"""

import math

KINDS = ("iou", "giou", "diou", "ciou")


def score(p, t, kind):
    x, y, w, h = p
    tx, ty, tw, th = t
    l, r, top, bot = x - w / 2, x + w / 2, y - h / 2, y + h / 2
    tl, tr, tt, tb = tx - tw / 2, tx + tw / 2, ty - th / 2, ty + th / 2
    iw = max(0.0, min(r, tr) - max(l, tl))
    ih = max(0.0, min(bot, tb) - max(top, tt))
    inter = iw * ih
    union = w * h + tw * th - inter
    iou = inter / union if union > 0 else 0.0
    if kind == "iou":
        return iou
    cw, ch = max(r, tr) - min(l, tl), max(bot, tb) - min(top, tt)
    if kind == "giou":
        c = cw * ch
        return iou - (c - union) / c if c > 0 else iou
    c2 = cw * cw + ch * ch
    d = ((x - tx) ** 2 + (y - ty) ** 2) / c2 if c2 > 0 else 0.0
    if kind == "diou":
        return iou - d
    v = 4 / math.pi ** 2 * (math.atan(tw / th) - math.atan(w / h)) ** 2
    alpha = v / (1 - iou + v) if (1 - iou + v) > 0 else 0.0
    return iou - d - alpha * v


def score_gradient(p, t, kind):
    """d score / d (x, y, w, h) of the predicted box ``p``."""
    x, y, w, h = p
    tx, ty, tw, th = t
    l, r, top, bot = x - w / 2, x + w / 2, y - h / 2, y + h / 2
    tl, tr, tt, tb = tx - tw / 2, tx + tw / 2, ty - th / 2, ty + th / 2
    iw = min(r, tr) - max(l, tl)
    ih = min(bot, tb) - max(top, tt)
    overlap = iw > 0 and ih > 0
    iw, ih = max(iw, 0.0), max(ih, 0.0)
    inter = iw * ih
    union = w * h + tw * th - inter
    # derivatives with respect to the edges l, r, top, bot of the prediction
    dI = [0.0, 0.0, 0.0, 0.0]
    if overlap:
        dI = [-ih if l > tl else 0.0, ih if r < tr else 0.0,
              -iw if top > tt else 0.0, iw if bot < tb else 0.0]
    dA = [-h, h, -w, w]                         # d(w*h) / d edges
    dU = [a - i for a, i in zip(dA, dI)]
    iou = inter / union if union > 0 else 0.0
    g = [(di * union - inter * du) / union ** 2 if union > 0 else 0.0
         for di, du in zip(dI, dU)]
    gx = gy = gw = gh = 0.0
    if kind in ("giou", "diou", "ciou"):
        cw, ch = max(r, tr) - min(l, tl), max(bot, tb) - min(top, tt)
        dcw = [-1.0 if l < tl else 0.0, 1.0 if r > tr else 0.0, 0.0, 0.0]
        dch = [0.0, 0.0, -1.0 if top < tt else 0.0, 1.0 if bot > tb else 0.0]
        if kind == "giou":
            c = cw * ch
            if c > 0:
                dC = [a * ch + b * cw for a, b in zip(dcw, dch)]
                g = [gi + (du * c - union * dc) / c ** 2 for gi, du, dc in zip(g, dU, dC)]
        else:
            c2 = cw * cw + ch * ch
            if c2 > 0:
                rho2 = (x - tx) ** 2 + (y - ty) ** 2
                dc2 = [2 * cw * a + 2 * ch * b for a, b in zip(dcw, dch)]
                g = [gi + rho2 * dc / c2 ** 2 for gi, dc in zip(g, dc2)]
                gx -= 2 * (x - tx) / c2
                gy -= 2 * (y - ty) / c2
            if kind == "ciou":
                diff = math.atan(tw / th) - math.atan(w / h)
                v = 4 / math.pi ** 2 * diff ** 2
                alpha = v / (1 - iou + v) if (1 - iou + v) > 0 else 0.0
                # d v / d w = -8/pi^2 * diff * h / (w^2 + h^2), d v / d h = +8/pi^2 * diff
                # * w / (w^2 + h^2); the score has -alpha * v
                k = 8 / math.pi ** 2 * diff / (w * w + h * h)
                gw += alpha * k * h
                gh -= alpha * k * w
    # edges -> centre and size: l = x - w/2, r = x + w/2, ...
    gx += g[0] + g[1]
    gy += g[2] + g[3]
    gw += (g[1] - g[0]) / 2
    gh += (g[3] - g[2]) / 2
    return gx, gy, gw, gh
