"""Weight tools and measures: ``fuse``, ``partial``, ``reset``, ``rgbgr``, ``ops`` and ``speed``
(``partial``, ``rgbgr``, ``ops`` and ``speed`` as in pj:examples/darknet.c), and ``version``."""

import platform
import time
import warnings

import numpy as np
import PIL

from .. import __version__
from ..cfg.edit import CfgDocument
from ..errors import DarknetError, WeightsError
from ..nn.backend import on_gpu
from ..nn.network import Network
from ..nn.weights import WeightsWarning, nonfinite_summary
from .common import at_least, device, device_flags, positionals


def _loaded(args, partial=False, cutoff=None):
    """The network of ``args.cfg`` at batch 1 on the CPU, with ``args.weights`` loaded
    (without load_weights' NaN warning: ``_save`` refuses such weights in one line)."""
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeightsWarning)
        net.load_weights(args.weights, partial=partial, cutoff=cutoff)
    return net


def _save(net, args, out, cutoff=None):
    """Write ``out``, unless the weights to write hold NaN/inf: then one error naming the
    input, ``out`` not written (Network.save_weights would refuse it too)."""
    found = net.nonfinite_arrays(None if cutoff is None else net.layers[:cutoff])
    if found:
        raise WeightsError(f"the weights hold {nonfinite_summary(found)}: {out} not written "
                           "(weights saved by a training that diverged?)", args.weights)
    net.save_weights(out, cutoff=cutoff)


def cmd_fuse(args):
    """Fold every batch norm into its layer: an inference-only cfg and weights."""
    net = _loaded(args)
    folded = [layer.index for layer in net.layers
              if layer.type in ("convolutional", "connected") and layer.batch_normalize]
    net.fold_batchnorm()
    doc = CfgDocument.load(args.cfg)
    for i in folded:
        doc.layer(i).set("batch_normalize", 0,
                         comment="folded into the weights by darknet_py fuse")
    _save(net, args, args.out_weights)       # first: no cfg is left beside no weights
    doc.save(args.out_cfg)
    print(f"Folded batch norm of {len(folded)} layers into {args.out_weights}; "
          f"inference cfg {args.out_cfg}")
    return 0


def cmd_partial(args):
    """Darknet's partial: the first N layers' weights, seen reset (a *.conv.N backbone); the
    layers after them are not read (a cfg with other heads may take a file's backbone)."""
    net = _loaded(args, partial=True, cutoff=args.n)
    net.seen = 0
    _save(net, args, args.out, cutoff=args.n)
    print(f"Saved the first {min(args.n, len(net.layers))} layers of {args.weights} to {args.out}")
    return 0


def cmd_reset(args):
    """The same weights with seen = 0 (training schedules start over)."""
    net = _loaded(args)
    net.seen = 0
    _save(net, args, args.out)
    print(f"Saved {args.out} with seen = 0")
    return 0


def cmd_rgbgr(args):
    """pj ``rgbgr CFG WEIGHTS OUT``: swap the R and B input channels of the first conv layer's
    filters (an RGB model becomes a BGR one and back)."""
    net = _loaded(args)
    conv = next((layer for layer in net.layers if layer.type == "convolutional"), None)
    if conv is None:
        raise DarknetError("rgbgr: the cfg has no [convolutional] layer", args.cfg)
    if conv.weights.shape[1] != 3:
        raise DarknetError(f"rgbgr: the first [convolutional] sees {conv.weights.shape[1]} "
                           "channels per group, not 3 (Darknet leaves it as it is)",
                           args.cfg, conv.line)
    conv.weights[:, [0, 2]] = conv.weights[:, [2, 0]]
    _save(net, args, args.out)
    print(f"Saved {args.out} with layer {conv.index}'s R and B input channels swapped")
    return 0


def _ops(net):
    """pj numops: 2*n*size*size*(c/groups)*out_h*out_w per conv, 2*inputs*outputs per connected."""
    return sum(round(layer.bflops() * 1e9) for layer in net.layers)


def cmd_ops(args):
    """pj ``ops CFG``: the floating point operations of one forward pass (batch 1)."""
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    ops = _ops(net)
    print(f"Floating Point Operations: {ops}")
    print(f"Floating Point Operations: {ops / 1e9:.2f} Bn")
    return 0


def cmd_speed(args):
    """pj ``speed CFG [TICS]``: TICS forward passes of a blank image at batch 1, timed."""
    net = Network.from_cfg(args.cfg, batch=1, device=device(args), device_index=args.gpu_index,
                           seed=0, precision=args.precision)
    if not args.no_graphs:
        net.enable_graphs()
    x = net.xp.zeros((1, *net.input_shape), dtype=np.float32)
    out = net.forward(x)                       # warm-up: GPU plans and memory pools
    sync = net.xp.cuda.Device().synchronize if on_gpu(out) else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(args.tics):
        net.forward(x)
    sync()
    seconds = time.perf_counter() - t
    bn = _ops(net) / 1e9
    print(f"\n{args.tics} evals, {seconds:f} Seconds")
    print(f"Floating Point Operations: {bn:.2f} Bn")
    print(f"FLOPS: {bn * args.tics / seconds:.2f} Bn")
    print(f"Speed: {seconds / args.tics:f} sec/eval")
    print(f"Speed: {args.tics / seconds:f} Hz")
    return 0


def _gpu_report():
    """Lines on CuPy, CUDA, cuDNN and the GPUs, or why there is no GPU engine."""
    try:
        import cupy
    except ImportError:
        return ["GPU: CuPy is not installed, so darknet_py runs on the CPU "
                "(pip install -e '.[gpu]' adds CuPy, cuDNN and the cuDNN Frontend)"]
    except Exception as e:                  # a broken CUDA install fails at import
        return [f"GPU: CuPy does not load: {str(e).splitlines()[0]}"]
    rt = cupy.cuda.runtime
    try:
        count = rt.getDeviceCount()
        lines = [f"CuPy {cupy.__version__}, CUDA runtime {rt.runtimeGetVersion()}, "
                 f"driver {rt.driverGetVersion()}"]
    except Exception as e:
        return [f"GPU: CuPy {cupy.__version__} finds no usable GPU: {str(e).splitlines()[0]}"]
    for i in range(count):
        props = rt.getDeviceProperties(i)
        lines.append(f"GPU {i}: {props['name'].decode()}, compute capability "
                     f"{props['major']}.{props['minor']}, "
                     f"{props['totalGlobalMem'] / 2 ** 30:.0f} GiB")
    try:
        import cudnn
        lines.append(f"cuDNN Frontend {cudnn.__version__}, cuDNN {cudnn.backend_version()}")
    except Exception as e:
        lines.append(f"cuDNN Frontend: not usable ({str(e).splitlines()[0]}); convolutions and "
                     "batch norm fall back to CuPy kernels")
    return lines


def cmd_version(args):
    """The version and what darknet_py runs on (the first thing to send with a bug report)."""
    print(f"darknet_py {__version__}")
    print(f"Python {platform.python_version()}, NumPy {np.__version__}, Pillow {PIL.__version__}")
    for line in _gpu_report():
        print(line)
    return 0


def register(subparsers):
    fuse = subparsers.add_parser(
        "fuse", help="fuse CFG WEIGHTS OUT_CFG OUT_WEIGHTS: fold batch norm into the weights")
    positionals(fuse, "cfg", "weights", "out_cfg", "out_weights")
    fuse.set_defaults(func=cmd_fuse)
    partial = subparsers.add_parser("partial",
                                    help="partial CFG WEIGHTS OUT N: keep the first N layers")
    positionals(partial, "cfg", "weights", "out")
    partial.add_argument("n", type=at_least(1), help="how many layers to keep")
    partial.set_defaults(func=cmd_partial)
    reset = subparsers.add_parser("reset",
                                  help="reset CFG WEIGHTS OUT: the weights with seen = 0")
    positionals(reset, "cfg", "weights", "out")
    reset.set_defaults(func=cmd_reset)
    rgbgr = subparsers.add_parser("rgbgr", help="rgbgr CFG WEIGHTS OUT: swap the first conv "
                                  "layer's R and B input channels")
    positionals(rgbgr, "cfg", "weights", "out")
    rgbgr.set_defaults(func=cmd_rgbgr)
    ops = subparsers.add_parser("ops", help="ops CFG: floating point operations per image")
    ops.add_argument("cfg")
    ops.set_defaults(func=cmd_ops)
    speed = subparsers.add_parser("speed", help="speed CFG [TICS]: time TICS forward passes")
    speed.add_argument("cfg")
    speed.add_argument("tics", nargs="?", type=at_least(1), default=1000)
    device_flags(speed)
    speed.set_defaults(func=cmd_speed)
    version = subparsers.add_parser("version", help="the version, and the CUDA, cuDNN and GPUs "
                                    "darknet_py finds")
    version.set_defaults(func=cmd_version)
