"""pj's class trees (YOLO9000's ``[region] tree=``, pj:src/tree.c): reading a tree file and the
arithmetic over its groups that the region layer and its detections use.

A tree file has one line per class, ``name parent`` (parent: an earlier line's number, counted
from 0, or -1 for a root).  pj read_tree makes a group of every run of consecutive lines with
the same parent: ``group[c]`` is c's group, ``group_offset``/``group_size`` its first line and
length, ``child[p]`` the last group whose parent is p (-1: a leaf), ``leaf[c]`` whether no line
names c as its parent.  The softmax of a tree runs over each group on its own (pj:src/
blas_kernels.cu softmax_tree); a class's probability is the product of its own and its
ancestors' (pj hierarchy_predictions, get_hierarchy_probability).

darknet_py refuses what pj reads without a word and then indexes outside its arrays: a line
without an integer parent, a parent that is not an earlier line, an empty file.  So every
parent comes before its children, and the products can be taken level by level.
"""

from dataclasses import dataclass, field

import numpy as np

from ..errors import CfgError
from ..nn.backend import xp_of


@dataclass
class Tree:
    path: str
    name: list
    parent: np.ndarray                  # int64 (n,)
    child: np.ndarray
    group: np.ndarray
    group_offset: np.ndarray            # (groups,)
    group_size: np.ndarray
    leaf: np.ndarray                    # bool (n,)
    _levels: list = field(default_factory=list, repr=False)
    _buckets: list = field(default_factory=list, repr=False)

    @property
    def n(self):
        return len(self.parent)

    @property
    def groups(self):
        return len(self.group_size)

    def levels(self):
        """The nodes with a parent, by depth (1, 2, ...): each level's parents are final once
        the levels before it are multiplied in."""
        if not self._levels:
            depth = np.zeros(self.n, np.int64)
            for c, p in enumerate(self.parent):          # parents come first (read_tree)
                depth[c] = depth[p] + 1 if p >= 0 else 0
            self._levels = [np.flatnonzero(depth == d) for d in range(1, depth.max() + 1)]
        return self._levels

    def buckets(self):
        """The groups by size: (size, (groups of that size, size) class indices), so that one
        softmax per size covers every group (no loop over the groups)."""
        if not self._buckets:
            for s in np.unique(self.group_size):
                if s:
                    offsets = self.group_offset[self.group_size == s]
                    self._buckets.append((int(s), offsets[:, None] + np.arange(s)))
        return self._buckets

    def members(self):
        """(groups, largest group) class indices of each group, -1 after its end."""
        width = int(self.group_size.max(initial=1))
        k = np.arange(width)
        return np.where(k < self.group_size[:, None], self.group_offset[:, None] + k, -1)

    def path_of(self, c):
        """c and its ancestors, c first (get_hierarchy_probability's order)."""
        out = []
        while c >= 0:
            out.append(int(c))
            c = self.parent[c]
        return out


def read_tree(path, cfg_path=None, cfg_line=None):
    """pj read_tree of ``path`` (relative to the working directory, as in Darknet).  A file that
    cannot be read is a CfgError at the cfg's ``tree=`` line; a bad line one at its own."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        text = data.decode("utf-8-sig")
    except OSError as e:
        raise CfgError(f"tree={path}: cannot read the tree file: {e.strerror}", cfg_path,
                       cfg_line) from None
    except UnicodeDecodeError as e:
        raise CfgError("not a tree file (invalid UTF-8)", path,
                       data[:e.start].count(b"\n") + 1) from None
    names, parents = [], []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words and number == len(lines):
            break
        c = len(names)
        try:
            name, parent = words
            parent = int(parent)
        except ValueError:
            raise CfgError(f"expected 'name parent' (a class name and the number of its "
                           f"parent's line, from 0, or -1), found {line.strip()!r}", path,
                           number) from None
        if not -1 <= parent < c:
            raise CfgError(f"the parent of {name} (line {c} from 0) is {parent}: it must be an "
                           "earlier line's number (from 0) or -1", path, number)
        names.append(name)
        parents.append(parent)
    if not names:
        raise CfgError(f"tree={path}: the tree file has no classes", cfg_path, cfg_line)
    parent = np.asarray(parents, np.int64)
    # pj: a new group at every change of parent (the first line's parent is -1 here)
    start = np.flatnonzero(np.r_[True, parent[1:] != parent[:-1]])
    first = np.zeros(len(parent), bool)
    first[start] = True
    group = np.cumsum(first) - 1
    size = np.diff(np.r_[start, len(parent)])
    child = np.full(len(parent), -1, np.int64)
    roots = parent >= 0
    np.maximum.at(child, parent[roots], group[roots])   # a parent's last group, as pj's loop
    leaf = np.ones(len(parent), bool)
    leaf[parent[roots]] = False
    return Tree(str(path), names, parent, child, group, start.astype(np.int64),
                size.astype(np.int64), leaf)


def read_map(path, cfg_path=None, cfg_line=None, classes=None):
    """pj read_map: one class number a line (``[region] map=``, the .data file's ``map=``)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or "not a UTF-8 text file"
        raise CfgError(f"map={path}: cannot read the map file: {why}", cfg_path,
                       cfg_line) from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip() and number == len(lines):
            break
        try:
            out.append(int(line))
        except ValueError:
            raise CfgError(f"expected a class number, found {line.strip()!r}", path,
                           number) from None
        if classes is not None and not -1 <= out[-1] < classes:    # -1: no class (pj)
            raise CfgError(f"class {out[-1]} is not in -1..{classes - 1} (classes={classes})",
                           path, number)
    return np.asarray(out, np.int64)


def tree_softmax(tree, z, axis):
    """pj softmax_tree: a softmax over each group of the classes on ``axis`` of ``z`` (NumPy or
    CuPy), one per group size; returns a new array in z's dtype."""
    xp = xp_of(z)
    z = xp.moveaxis(z, axis, -1)
    out = xp.empty_like(z)
    cache = tree.__dict__.setdefault("_device_buckets", {})
    key = "numpy" if xp is np else (xp.__name__, xp.cuda.Device().id)
    if key not in cache:                # the buckets' indices, copied to each device once
        cache[key] = [xp.asarray(idx) for _, idx in tree.buckets()]
    for idx in cache[key]:
        v = z[..., idx]                                           # (..., groups, size)
        e = xp.exp(v - v.max(axis=-1, keepdims=True))
        out[..., idx] = e / e.sum(axis=-1, keepdims=True)
    return xp.moveaxis(out, -1, axis)


def hierarchy_predictions(tree, p):
    """pj hierarchy_predictions (only_leaves 0) of the classes on the last axis of ``p``: each
    class times its parent's product, parents first.  Returns a new array."""
    p = p.copy()
    for nodes in tree.levels():
        p[..., nodes] = p[..., nodes] * p[..., tree.parent[nodes]]
    return p


def hierarchy_probability(tree, x, c):
    """pj get_hierarchy_probability: x[c] x x[parent] x ... in pj's order (classes on the last
    axis of ``x``)."""
    p = 1
    for node in tree.path_of(c):
        p = p * x[..., node]
    return p


def hierarchy_top_prediction(tree, p, thresh):
    """pj hierarchy_top_prediction for each row of ``p`` (rows, classes) float32 (host): from
    the root group, the best class of the group while the running product stays above
    ``thresh``; a group whose best falls below it returns its parent (the root group: its
    best).  All rows at once, one step down the tree per pass."""
    p = np.asarray(p, np.float32)
    rows = np.arange(len(p))
    members = tree.members()
    group = np.zeros(len(p), np.int64)
    run = np.ones(len(p), np.float32)
    out = np.zeros(len(p), np.int64)
    active = np.ones(len(p), bool)
    thresh = np.float32(thresh)
    while active.any():
        r, g = rows[active], group[active]
        idx = members[g]
        vals = np.where(idx >= 0, p[r[:, None], np.maximum(idx, 0)], 0)
        vals = np.where(vals > 0, vals, np.float32(0))     # pj: max from 0, val > max
        k = vals.argmax(axis=1)
        best = vals[np.arange(len(r)), k]
        best_i = np.where(best > 0, idx[np.arange(len(r)), k], 0)
        down = run[r] * best > thresh
        leafward = tree.child[best_i]
        done = ~down | (leafward < 0)
        result = np.where(down | (g == 0), best_i,
                          tree.parent[tree.group_offset[g]])
        out[r[done]] = result[done]
        run[r] = np.where(down, run[r] * best, run[r])
        group[r] = np.where(down, leafward, g)
        active[r[done]] = False
    return out


def region_tree_probs(layer, v, scale, thresh, hier_thresh, map=None):
    """pj get_region_detections' ``softmax_tree`` branch for the rows ``v`` (cells, entries)
    float32 of a tree [region] with objectness ``scale``: hierarchy_predictions over the
    classes, then with ``map`` (the .data file's, pj validate_detector) the probability
    obj x p of each mapped class, zeroed when <= thresh (pj reads 200 lines: the ImageNet
    detection classes; darknet_py the map's lines), else the one class
    hierarchy_top_prediction picks with ``hier_thresh`` gets obj (0 when obj <= thresh).
    Returns (cells, classes) float32."""
    tree, c, ncls = layer.softmax_tree, layer.coords, layer.classes
    first = c + (0 if layer.background else 1)
    v = np.array(v, np.float32)
    v[:, first:first + ncls] = hierarchy_predictions(tree, v[:, first:first + ncls])
    t = np.float32(thresh)
    probs = np.zeros((len(v), ncls), np.float32)
    if map is not None:
        m = np.asarray(map, np.int64)[:ncls]
        p = scale[:, None] * v[:, c + 1 + m]
        probs[:, :len(m)] = np.where(p > t, p, np.float32(0))
    else:
        top = hierarchy_top_prediction(tree, v[:, first:first + ncls], hier_thresh)
        probs[np.arange(len(v)), top] = np.where(scale > t, scale, np.float32(0))
    return probs
