"""The class deltas of a ``[region]`` with ``tree=`` (YOLO9000), pj:src/region_layer.c
forward_region_layer and delta_region_class's ``hier`` branch, for yololoss.region_loss.

* A truth's class c (after ``map=``; a class < 0 writes nothing, as pj's ``while (class >=
  0)``; one past the last class is taken as the last) writes, for c and each of its ancestors, class_scale
  (0 - p) on every class of that node's group and class_scale (1 - p) on the node: the groups
  off its path keep what earlier writes left (pj writes them whatever the cell holds: no
  ``if (delta[index])`` test here); the report's class figure adds the product of p along
  the path.
* An image whose truths include a class-only one (x and y above 100000, pj's mark for a
  classification image) before its end marker takes only the first of those: every cell's
  objectness gets noobject_scale (0 - obj) -- no box or prior delta, no other truth --, and the
  cell and anchor with the largest obj x p(class along its path) (the first, 0 when none is
  above 0) get the class writes above with the truth's class as given (pj maps no class here)
  and an objectness delta of 0.

The plan (which planes each write touches and its target) is made on the host per class and
kept by the tree; the values are computed on the outputs' device.
"""

import numpy as np

CLASS_ONLY = 100000         # pj: truth.x > 100000 && truth.y > 100000


def class_writes(tree, c):
    """(classes, targets) that delta_region_class's hier branch writes for class c, in pj's
    order (c's group, then its parent's, ...), cached on the tree; none for a class < 0."""
    cache = tree.__dict__.setdefault("_writes", {})
    if c not in cache:
        planes, targets = [np.zeros(0, np.int64)], [np.zeros(0)]
        for node in tree.path_of(c):
            g = tree.group[node]
            members = tree.group_offset[g] + np.arange(tree.group_size[g])
            planes.append(members)
            targets.append((members == node).astype(np.float64))
        cache[c] = (np.concatenate(planes), np.concatenate(targets))
    return cache[c]


def write_plan(tree, classes, prefix):
    """Host arrays for the class writes of ops with ``classes`` (in op order): per write its
    op, class and target, and per op where its writes start (``prefix`` names them); the ops'
    paths (-1 padded) for the report's product."""
    parts = [class_writes(tree, int(c)) for c in classes]
    lengths = np.array([len(p) for p, _ in parts], np.int64)
    paths = [tree.path_of(int(c)) for c in classes]
    width = max([1] + [len(p) for p in paths])
    path = np.full((len(classes), width), -1, np.int64)
    for q, p in enumerate(paths):
        path[q, :len(p)] = p
    cat = (lambda k, dtype: np.concatenate([p[k] for p in parts]).astype(dtype)
           if parts else np.zeros(0, dtype))
    return {f"{prefix}op": np.repeat(np.arange(len(classes)), lengths),
            f"{prefix}plane": cat(0, np.int64), f"{prefix}target": cat(1, np.float64),
            f"{prefix}start": np.r_[0, np.cumsum(lengths)].astype(np.int64),
            f"{prefix}path": path}


def class_only_images(t, live):
    """Per image the first live truth marked class-only (pj's onlyclass), as (images, rows)."""
    mark = live & (t[..., 0] > CLASS_ONLY) & (t[..., 1] > CLASS_ONLY)
    images = np.flatnonzero(mark.any(axis=1))
    return images, mark[images].argmax(axis=1)


def _path_product(xp, value_at, path):
    """pj get_hierarchy_probability's product along each row of ``path`` (-1: none; a class
    < 0 has an empty path and the product 1), with ``value_at(column)`` the values of the
    nodes in one column of it."""
    p = 1.0
    for k in range(path.shape[1]):
        p = p * xp.where(path[:, k] >= 0, value_at(k), 1.0)
    return p


def hier_writes(layer, g, dev, bounds, box_obj, start):
    """The ops' box/objectness writes and their hier class writes, round by round (the later
    truth of a cell wins; ``start``: where each op's writes begin, host); returns the product
    of p along each op's path (the report's)."""
    xp, c = g.xp, layer.coords
    idx = dev["idx"]
    where = idx[dev["h_op"], c + 1 + dev["h_plane"]]
    value = layer.class_scale * (dev["h_target"] - g.o_flat[where])
    for r in range(len(bounds) - 1):
        s, e = bounds[r], bounds[r + 1]
        g.d_flat[idx[s:e, :5]] = box_obj[s:e]
        g.d_flat[where[start[s]:start[e]]] = value[start[s]:start[e]]
    path = dev["h_path"]
    return _path_product(xp, lambda k: g.o_flat[idx[xp.arange(idx.shape[0]),
                                                     c + 1 + xp.maximum(path[:, k], 0)]],
                         path)


def class_only(layer, g, dev):
    """pj's onlyclass images (``dev["co_images"]``): their deltas replaced as the module
    docstring says.  Returns the product of p along each one's path at the chosen cell."""
    xp, c, hw = g.xp, layer.coords, g.h * g.w
    images, path = dev["co_images"], dev["co_path"]
    o = g.o[images]                                             # (m, n, planes, H, W)
    rows = xp.arange(len(images))
    prob = _path_product(xp, lambda k: o[rows, :, c + 1 + xp.maximum(path[:, k], 0)], path)
    score = (o[:, :, c] * prob).reshape(len(images), -1)        # location n*w*h + j*w + i
    score = xp.where(score > 0, score, 0)                       # pj: from 0, p > maxp
    best = score.argmax(axis=1)
    a, cell = best // hw, best % hw
    place = (images * g.n + a) * g.planes * hw + cell           # plane 0 of the chosen cell
    d = g.d
    d[images] = 0
    d[images, :, c] = -layer.noobject_scale * o[:, :, c]
    where = place[dev["co_op"]] + (c + 1 + dev["co_plane"]) * hw
    g.d_flat[where] = layer.class_scale * (dev["co_target"] - g.o_flat[where])
    g.d_flat[place + c * hw] = 0
    return prob.reshape(len(images), -1)[rows, best]
