"""``export onnx CFG WEIGHTS OUT.onnx``: a Darknet network as an ONNX file
(darknet_py.export.onnx), with batch norm folded as the inference commands fold it."""

import os

from ..export import OPSET
from ..nn.network import Network
from .common import at_least, command_group


def cmd_export_onnx(args):
    from ..export.onnx import export_onnx     # the onnx package only when exporting
    net = Network.from_cfg(args.cfg, batch=1, device="cpu")
    if args.width or args.height:
        net = net.resized(args.width or net.input_shape[2], args.height or net.input_shape[1])
    net.load_weights(args.weights, fuse=True)
    model = export_onnx(net, args.out, args.batch, args.dynamic_batch, args.decode, args.opset)
    shape = lambda v: "x".join(str(d.dim_value or d.dim_param)                     # noqa: E731
                               for d in v.type.tensor_type.shape.dim)
    outs = ", ".join(f"{v.name} {shape(v)}" for v in model.graph.output)
    print(f"Wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB, opset {args.opset}, "
          f"{len(model.graph.node)} nodes): input {shape(model.graph.input[0])} -> {outs}")
    return 0


def register(subparsers):
    esub = command_group(subparsers, "export", "write a network in another format")
    p = esub.add_parser("onnx", help="export onnx CFG WEIGHTS OUT.onnx: an ONNX file (batch norm "
                        "folded) for onnxruntime, TensorRT, OpenVINO...")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("out", help="the .onnx file to write")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="a batch dimension of any size (default: fixed, --batch)")
    p.add_argument("--batch", type=at_least(1), default=1, help="the fixed batch (default 1)")
    p.add_argument("--decode", action="store_true",
                   help="[yolo]/[region] heads as decoded 'boxes' (x, y, w, h relative to the "
                        "input) and 'scores' (objectness x class probability) instead of their "
                        "maps")
    p.add_argument("--width", type=at_least(1), default=0, help="input width (default: the cfg's)")
    p.add_argument("--height", type=at_least(1), default=0,
                   help="input height (default: the cfg's)")
    p.add_argument("--opset", type=at_least(OPSET), default=OPSET,
                   help=f"ONNX opset (default {OPSET})")
    p.set_defaults(func=cmd_export_onnx)
