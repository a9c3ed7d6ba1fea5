"""A darknet_py network as an ONNX graph (``export onnx CFG WEIGHTS OUT.onnx``): how Darknet's
models reach onnxruntime, TensorRT, OpenVINO and phones.

Every layer becomes the ONNX operators that compute what its darknet_py forward computes at
inference (float32, NCHW), with batch norm folded into the convolution's weights first (AB's
fuse_conv_batchnorm, AB:src/network.c); tests/test_export_onnx.py runs the files in
onnxruntime against darknet_py's forward.  ``[yolo]``/``[region]`` heads give their activated
maps, as the layer's output (pj:src/yolo_layer.c forward_yolo_layer), or with ``decode`` one
``boxes`` (N, n, 4: x, y, w, h relative to the network input) and one ``scores`` (N, n,
classes: objectness x p(class), pj get_yolo_detections) for every head together, in pj's order
(per [yolo] head: cells row-major, anchors inner; per [region]: anchor-major).

Built with the ``onnx`` package's helpers only (``pip install 'darknet_py[onnx]'``).  A layer
that ONNX cannot express the way darknet_py computes it is a one-line error at its cfg line.
"""

from __future__ import annotations

import numpy as np

from ..errors import DarknetError, NotSupportedError
from . import OPSET
from ..nn.backend import to_numpy

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:          # the [onnx] extra; export_onnx says so
    onnx = None

SELU_ALPHA, SELU_GAMMA = 1.6732, 1.0507       # darknet_py.nn.activations (pj's constants)
GELU_A, GELU_B = 0.797885, 0.035677


def _unsupported(layer, what):
    return NotSupportedError(f"[{layer.section_name}] {what}: not expressible in the ONNX "
                             "export", layer.path, layer.line)


class _Graph:
    """The nodes and initializers being built, with fresh names."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, values, stem="c", dtype=np.float32):
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype), name))
        return name

    def ints(self, values, stem="shape"):
        return self.const(values, stem, np.int64)

    def op(self, kind, inputs, stem=None, **attrs):
        out = self.name(stem or kind.lower())
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def scalar_op(self, kind, x, value):
        return self.op(kind, [x, self.const(value)])

    def reshape(self, x, shape):
        """``shape`` without the batch: the batch dimension is kept (0), so one file serves
        every batch size when it is dynamic."""
        return self.op("Reshape", [x, self.ints([0, *shape])])

    def slice(self, x, axis, start, end, step=1):
        return self.op("Slice", [x, self.ints([start]), self.ints([end]), self.ints([axis]),
                                 self.ints([step])])

    def activate(self, x, name, layer):
        """darknet_py.nn.activations.activate, operator for operator."""
        op, const = self.op, self.const
        if name == "linear":
            return x
        if name == "logistic":
            return op("Sigmoid", [x])
        if name == "loggy":
            return self.scalar_op("Sub", self.scalar_op("Mul", op("Sigmoid", [x]), 2.0), 1.0)
        if name == "relu":
            return op("Relu", [x])
        if name in ("leaky", "relie"):
            return op("LeakyRelu", [x], alpha=0.1 if name == "leaky" else 0.01)
        if name == "relu6":
            return op("Clip", [x, const(0.0), const(6.0)])
        if name == "hardtan":
            return op("Clip", [x, const(-1.0), const(1.0)])
        if name == "ramp":
            return op("Add", [op("Relu", [x]), self.scalar_op("Mul", x, 0.1)])
        if name == "elu":
            return op("Elu", [x], alpha=1.0)
        if name == "selu":
            return op("Selu", [x], alpha=SELU_ALPHA, gamma=SELU_GAMMA)
        if name == "tanh":
            return op("Tanh", [x])
        if name == "swish":
            return op("Mul", [x, op("Sigmoid", [x])])
        if name == "mish":
            return op("Mul", [x, op("Tanh", [op("Softplus", [x])])])
        if name == "hard_mish":       # x > 0: x;  x > -2: x*x/2 + x;  else 0
            quad = op("Add", [self.scalar_op("Mul", op("Mul", [x, x]), 0.5), x])
            inner = op("Where", [op("Greater", [x, const(-2.0)]), quad, const(0.0)])
            return op("Where", [op("Greater", [x, const(0.0)]), x, inner])
        if name == "gelu":           # 0.5 x (1 + tanh(a x + b x^3))
            cube = op("Mul", [op("Mul", [x, x]), x])
            t = op("Tanh", [op("Add", [self.scalar_op("Mul", x, GELU_A),
                                       self.scalar_op("Mul", cube, GELU_B)])])
            return op("Mul", [self.scalar_op("Mul", x, 0.5), self.scalar_op("Add", t, 1.0)])
        raise _unsupported(layer, f"activation={name}")


# ------------------------------------------------------------------------------------------------
# one function per layer type: (graph, layer, the layer's input, every layer's output) -> output
# ------------------------------------------------------------------------------------------------

def _image(g, layer, x):
    return g.reshape(x, [layer.c, layer.h, layer.w])


def _linear_epilogue(g, layer, out):
    """forward_epilogue at inference after the fold: + biases, then the activation (an
    unfolded batch norm, which load_network never leaves, would be refused)."""
    if layer.batch_normalize:
        raise _unsupported(layer, "batch norm not folded")
    return g.activate(out, layer.activation, layer)


def _convolutional(g, layer, x, outputs):
    p = layer.padding
    w = g.const(to_numpy(layer.weights), "weights")
    b = g.const(to_numpy(layer.biases), "biases")
    k = layer.size
    out = g.op("Conv", [_image(g, layer, x), w, b], kernel_shape=[k, k],
               strides=[layer.stride, layer.stride], pads=[p, p, p, p], group=layer.groups)
    return _linear_epilogue(g, layer, out)


def _connected(g, layer, x, outputs):
    flat = g.reshape(x, [layer.inputs])
    out = g.op("Gemm", [flat, g.const(to_numpy(layer.weights), "weights"),
                        g.const(to_numpy(layer.biases), "biases")], transB=1)
    return _linear_epilogue(g, layer, g.reshape(out, [layer.out_c, 1, 1]))


def _maxpool(g, layer, x, outputs):
    """pj's maxpool pads ``padding`` in all, ``padding/2`` before (pj:src/maxpool_layer.c
    w_offset = -pad/2): top/left padding/2, bottom/right whatever the last window needs."""
    s, k, off = layer.stride, layer.size, layer.padding // 2
    bottom = max(0, (layer.out_h - 1) * s + k - layer.h - off)
    right = max(0, (layer.out_w - 1) * s + k - layer.w - off)
    return g.op("MaxPool", [_image(g, layer, x)], kernel_shape=[k, k], strides=[s, s],
                pads=[off, off, bottom, right])


def _avgpool(g, layer, x, outputs):
    return g.op("GlobalAveragePool", [_image(g, layer, x)])


def _route(g, layer, x, outputs):
    """Each routed layer's flat output, its group_id-th of ``groups`` parts, concatenated."""
    pieces = []
    for src, start, part in layer._chunks(outputs["layers"]):
        flat = g.reshape(outputs[src.index], [src.outputs])
        if part != src.outputs:
            flat = g.slice(flat, 1, start, start + part)
        pieces.append(flat)
    out = pieces[0] if len(pieces) == 1 else g.op("Concat", pieces, axis=1)
    return g.reshape(out, [layer.out_c, layer.out_h, layer.out_w])


def _shortcut(g, layer, x, outputs):
    out = _image(g, layer, x)
    for i, mc, mh, mw, stride, sample in layer.maps:
        src = outputs["layers"][i]
        if sample != 1 or mc != layer.c or (mh, mw) != (layer.h, layer.w):
            raise _unsupported(layer, f"from layer {i} of another shape ({src.out_shape})")
        f = g.reshape(outputs[i], [src.out_c, src.out_h, src.out_w])
        if stride != 1:
            f = g.slice(g.slice(f, 2, 0, mh * stride, stride), 3, 0, mw * stride, stride)
        if src.out_c != mc:
            f = g.slice(f, 1, 0, mc)
        if layer.alpha != 1:
            out = g.scalar_op("Mul", out, layer.alpha)
        if layer.beta != 1:
            f = g.scalar_op("Mul", f, layer.beta)
        out = g.op("Add", [out, f])
    return g.activate(out, layer.activation, layer)


def _upsample(g, layer, x, outputs):
    s = abs(layer.stride)
    x = _image(g, layer, x)
    if layer.reverse:       # the sum over each s x s block
        out = g.scalar_op("Mul", g.op("AveragePool", [x], kernel_shape=[s, s], strides=[s, s]),
                          float(s * s))
    else:
        out = g.op("Resize", [x, "", g.const([1, 1, s, s])], mode="nearest",
                   coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return out if layer.scale == 1 else g.scalar_op("Mul", out, layer.scale)


def _reorg(g, layer, x, outputs):
    """ReorgLayer._forward_map: pj's reinterpreting reorg, or reorg3d's space-to-depth, as a
    reshape, a transpose and a reshape."""
    s = layer.stride
    c, h, w = layer.big_shape()
    if not layer.reverse:     # _to_deep
        y = g.op("Transpose", [g.reshape(x, [c, h // s, s, w // s, s])], perm=[0, 3, 5, 1, 2, 4])
    else:                     # _to_shallow
        y = g.op("Transpose", [g.reshape(x, [s, s, c, h // s, w // s])], perm=[0, 3, 4, 1, 5, 2])
    return g.reshape(y, [layer.out_c, layer.out_h, layer.out_w])


def _softmax(g, layer, x, outputs):
    if layer.spatial:
        z, axis = _image(g, layer, x), 1
    else:
        z, axis = g.reshape(x, [layer.groups, layer.inputs // layer.groups]), 2
    if layer.temperature != 1:
        z = g.scalar_op("Div", z, layer.temperature)
    return g.reshape(g.op("Softmax", [z], axis=axis), [layer.out_c, layer.out_h, layer.out_w])


def _identity(g, layer, x, outputs):
    return x


def _activation(g, layer, x, outputs):
    return g.activate(x, "logistic" if layer.type == "logistic" else layer.activation, layer)


def _batchnorm(g, layer, x, outputs):
    """The inference batch norm of a [batchnorm] layer: x * s + (biases - mean * s)."""
    s = to_numpy(layer.scales).astype(np.float64) / np.sqrt(
        to_numpy(layer.rolling_variance).astype(np.float64) + 1e-5)
    shift = to_numpy(layer.biases) - to_numpy(layer.rolling_mean) * s
    shape = (1, -1, 1, 1)
    return g.op("Add", [g.op("Mul", [_image(g, layer, x), g.const(s.reshape(shape))]),
                        g.const(shift.reshape(shape))])


def _head_planes(g, layer, x, entries):
    """(N, anchors, entries, h, w) and its split: [x y], [w h], the rest."""
    planes = g.reshape(x, [layer.n, entries, layer.h, layer.w])
    split = g.const([2, 2, entries - 4], "split", np.int64)
    names = [g.name("part") for _ in range(3)]
    g.nodes.append(helper.make_node("Split", [planes, split], names, axis=2))
    return names


def _yolo(g, layer, x, outputs):
    """forward_yolo_layer: logistic on x, y and every entry after w, h (AB's scale_x_y)."""
    xy, wh, rest = _head_planes(g, layer, x, 5 + layer.classes)
    xy = g.op("Sigmoid", [xy])
    if layer.scale_x_y != 1:
        xy = g.scalar_op("Sub", g.scalar_op("Mul", xy, layer.scale_x_y),
                         0.5 * (layer.scale_x_y - 1))
    out = g.op("Concat", [xy, wh, g.op("Sigmoid", [rest])], axis=2)
    return g.reshape(out, [layer.c, layer.h, layer.w])


def _region(g, layer, x, outputs):
    """forward_region_layer: logistic on x, y and objectness (unless ``background``), softmax
    or logistic on the classes."""
    if getattr(layer, "softmax_tree", None):
        raise _unsupported(layer, "tree= (YOLO9000)")
    c = layer.coords
    xy, wh, rest = _head_planes(g, layer, x, c + 1 + layer.classes)
    parts = [g.op("Sigmoid", [xy]), wh]
    if c > 4:
        parts.append(g.slice(rest, 2, 0, c - 4))
    obj = g.slice(rest, 2, c - 4, c - 3)
    classes = g.slice(rest, 2, c - 3, c - 3 + layer.classes)
    if layer.softmax and layer.background:
        both = g.op("Softmax", [g.op("Concat", [obj, classes], axis=2)], axis=2)
        parts.append(both)
    else:
        parts.append(obj if layer.background else g.op("Sigmoid", [obj]))
        parts.append(g.op("Softmax", [classes], axis=2) if layer.softmax
                     else g.op("Sigmoid", [classes]))
    out = g.op("Concat", parts, axis=2)
    return g.reshape(out, [layer.c, layer.h, layer.w])


BUILDERS = {
    "convolutional": _convolutional, "connected": _connected, "maxpool": _maxpool,
    "avgpool": _avgpool, "route": _route, "shortcut": _shortcut, "upsample": _upsample,
    "reorg": _reorg, "reorg3d": _reorg, "softmax": _softmax, "dropout": _identity,
    "cost": _identity, "activation": _activation, "logistic": _activation,
    "batchnorm": _batchnorm, "yolo": _yolo, "region": _region,
}


# ------------------------------------------------------------------------------------------------
# decoding the heads (pj get_yolo_detections / get_region_detections, before any threshold)
# ------------------------------------------------------------------------------------------------

def _grid(layer, anchor_major):
    """Column and row of every prediction, in the head's pj order, shaped (1, m, 1)."""
    k, r, c = np.meshgrid(np.arange(layer.n), np.arange(layer.h), np.arange(layer.w),
                          indexing="ij")
    if not anchor_major:            # cells row-major, anchors inner
        k, r, c = (a.transpose(1, 2, 0) for a in (k, r, c))
    return k.reshape(-1), r.reshape(-1), c.reshape(-1)


def _decode(g, layer, out, net_w, net_h):
    """(boxes (N, m, 4), scores (N, m, classes)) of one head's activated output ``out``."""
    yolo = layer.type == "yolo"
    entries = 5 + layer.classes if yolo else layer.coords + 1 + layer.classes
    planes = g.reshape(out, [layer.n, entries, layer.h, layer.w])
    # (N, n, E, h, w) -> (N, h, w, n, E) for [yolo] (pj's cell-major order), (N, n, h, w, E)
    perm = [0, 3, 4, 1, 2] if yolo else [0, 1, 3, 4, 2]
    rows = g.reshape(g.op("Transpose", [planes], perm=perm), [-1, entries])
    k, r, c = _grid(layer, anchor_major=not yolo)
    anchors = np.asarray(layer.anchors, np.float64).reshape(-1, 2)
    if yolo:
        a = anchors[np.asarray(layer.mask, np.int64)[k]] / [net_w, net_h]
    else:
        a = anchors[:layer.n][k] / [layer.w, layer.h]
    grid = np.stack([c, r], axis=1).astype(np.float32)[None]
    size = np.array([layer.w, layer.h], np.float32)
    xy = g.op("Div", [g.op("Add", [g.slice(rows, 2, 0, 2), g.const(grid)]), g.const(size)])
    wh = g.op("Mul", [g.op("Exp", [g.slice(rows, 2, 2, 4)]), g.const(a[None])])
    boxes = g.op("Concat", [xy, wh], axis=2)
    at = 4 if yolo else layer.coords
    obj = g.slice(rows, 2, at, at + 1)
    if not yolo and layer.background:
        obj = g.op("Expand", [g.const(1.0), g.op("Shape", [obj])])
    probs = g.slice(rows, 2, at + 1, at + 1 + layer.classes)
    return boxes, g.op("Mul", [obj, probs])


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------

def build_model(net, batch: int = 1, dynamic_batch: bool = False, decode: bool = False,
                opset: int = OPSET):
    """The ONNX ModelProto of ``net`` (its weights as they are: fold batch norm first, as
    load_network does).  Input ``input`` (batch, c, h, w) float32 in [0, 1]; outputs the
    network's output (``output``) or, with [yolo]/[region] heads, each head's map
    (``yolo_<layer>``), or ``boxes`` and ``scores`` with ``decode``."""
    if onnx is None:
        raise DarknetError("exporting to ONNX needs the onnx package: pip install "
                           "'darknet_py[onnx]' (or pip install onnx)")
    if opset < 13:
        raise DarknetError(f"opset {opset}: the export needs opset 13 or later")
    g = _Graph()
    c, h, w = net.input_shape
    dim = "batch" if dynamic_batch else int(batch)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [dim, c, h, w])]
    outputs = {"layers": net.layers}
    x = "input"
    for layer in net.layers:
        build = BUILDERS.get(layer.type)
        if build is None:
            raise NotSupportedError(f"[{layer.section_name}] layers cannot be exported to ONNX "
                                    "yet", layer.path, layer.line)
        x = outputs[layer.index] = build(g, layer, x, outputs)
    heads = [layer for layer in net.layers if layer.type in ("yolo", "region")]
    results = []
    if decode and heads:
        net_w, net_h = w, h
        parts = [_decode(g, layer, outputs[layer.index], net_w, net_h) for layer in heads]
        widths = {layer.classes for layer in heads}
        if len(widths) > 1:
            raise DarknetError(f"--decode: the heads have different classes ({sorted(widths)})")
        for i, name in enumerate(("boxes", "scores")):
            pieces = [p[i] for p in parts]
            joined = pieces[0] if len(pieces) == 1 else g.op("Concat", pieces, axis=1)
            g.nodes.append(helper.make_node("Identity", [joined], [name]))
            count = sum(layer.n * layer.out_h * layer.out_w for layer in heads)
            results.append((name, [dim, count, 4 if i == 0 else heads[0].classes]))
    elif heads:
        for layer in heads:
            name = f"{layer.type}_{layer.index}"
            g.nodes.append(helper.make_node("Identity", [outputs[layer.index]], [name]))
            results.append((name, [dim, layer.out_c, layer.out_h, layer.out_w]))
    else:
        last = net.output_layer
        g.nodes.append(helper.make_node("Identity", [outputs[last.index]], ["output"]))
        results.append(("output", [dim, last.out_c, last.out_h, last.out_w]))
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
            for name, shape in results]
    graph = helper.make_graph(g.nodes, "darknet_py", inputs, outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="darknet_py")
    # the oldest IR that has the opset, so that older runtimes read the file too
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model)
    return model


def export_onnx(net, path, batch: int = 1, dynamic_batch: bool = False, decode: bool = False,
                opset: int = OPSET):
    """Write :func:`build_model` to ``path``; returns the model."""
    model = build_model(net, batch, dynamic_batch, decode, opset)
    onnx.save(model, str(path))
    return model
