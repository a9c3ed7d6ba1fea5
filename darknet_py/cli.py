"""The ``darknet_py`` command line.  Errors are one line on stderr and a non-zero exit code."""

import argparse
import os
import sys
import warnings

import numpy as np

from .cfg import CfgWarning
from .errors import DarknetError


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, CfgWarning):
        print(str(message), file=sys.stderr)
    else:
        print(f"warning: {message}", file=sys.stderr)


def cmd_cfg_summary(args):
    from .network import Network
    net = Network.from_cfg(args.cfg, batch=1, strict=args.strict, seed=0)
    print(net.summary())
    return 0


def cmd_cfg_new(args):
    from .cfgnew import new_cfg
    anchors = None
    if args.anchors:
        try:
            values = [float(v) for v in args.anchors.replace(",", " ").split()]
        except ValueError:
            raise DarknetError(f"--anchors '{args.anchors}': expected numbers "
                               "w1,h1, w2,h2, ...") from None
        anchors = values
    try:
        doc = new_cfg(args.template, args.classes, size=args.size, anchors=anchors)
    except (ValueError, FileNotFoundError) as e:
        raise DarknetError(str(e)) from None
    if args.output in (None, "-"):
        sys.stdout.write(doc.text())
        return 0
    if os.path.exists(args.output) and not args.force:
        raise DarknetError(f"{args.output} exists; pass --force to overwrite it")
    doc.save(args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _device(args):
    return "cpu" if getattr(args, "nogpu", False) else args.device


def _train_classifier(args, cfg, data, weights):
    from .train import ClassifierTrainer
    trainer = ClassifierTrainer(cfg, data, weights, device=_device(args), gpu_index=args.gpu_index,
                                max_batches=args.max_batches, clear=args.clear,
                                resume=args.resume, seed=args.seed,
                                backup_every=args.backup_every,
                                darknet_lines=args.darknet_lines, progress=not args.no_progress)
    return trainer.run()


def _head(cfg):
    from .cfg import read_cfg
    parsed = read_cfg(cfg)
    for sec in reversed(parsed.layers):
        if sec.type in ("yolo", "region", "detection"):
            return "detector", sec
        if sec.type in ("softmax", "cost", "logistic"):
            return "classifier", sec
    return None, parsed.net


def cmd_train(args):
    kind, sec = _head(args.cfg)
    if kind == "detector":
        from .errors import NotSupportedError
        raise NotSupportedError(f"[{sec.name}] head: detector training is not supported by "
                                "darknet_py yet (classifier cfgs end in [softmax])",
                                sec.path, sec.line)
    if kind is None:
        raise DarknetError("the cfg has no training head: end it with [softmax] (or [cost], "
                           "[logistic]) for a classifier", args.cfg)
    return _train_classifier(args, args.cfg, args.data, args.weights)


def cmd_classifier_train(args):
    return _train_classifier(args, args.cfg, args.data, args.weights)


def _load_for_inference(args, cfg, weights):
    from .network import Network
    net = Network.from_cfg(cfg, batch=1, device=_device(args), device_index=args.gpu_index)
    net.load_weights(weights)
    return net


def cmd_classifier_valid(args):
    from .data import DataCfg, load_classification
    from .train import evaluate
    data = DataCfg(args.data)
    classes = data.int("classes", 2)
    top = args.t or max(1, data.int("top", 1))
    net = _load_for_inference(args, args.cfg, args.weights)
    dataset = load_classification(data, "valid", classes)
    top1, topk = evaluate(net, dataset, top)
    print(f"{len(dataset)}: top 1: {top1:f}, top {top}: {topk:f}")
    return 0


def _predict(net, names, paths, top):
    import time
    from .backend import to_numpy
    from .data import load_image
    for path in paths:
        t0 = time.perf_counter()
        x = load_image(path, net.input_shape, letterbox=True)[None]
        probs = to_numpy(net.forward(x)).ravel()
        print(f"{path}: Predicted in {time.perf_counter() - t0:f} seconds.", file=sys.stderr)
        for i in np.argsort(-probs)[:top]:
            print(f"{100 * probs[i]:5.2f}%: {names[i]}")
        sys.stdout.flush()


def _image_paths(images):
    if images:
        return images
    def prompt():
        while True:
            print("Enter Image Path: ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                return
            if line.strip():
                yield line.strip()
    return prompt()


def cmd_classifier_predict(args):
    from .data import DataCfg, class_names
    data = DataCfg(args.data)
    classes = data.int("classes", 2)
    top = args.t or max(1, data.int("top", 1))
    net = _load_for_inference(args, args.cfg, args.weights)
    _predict(net, class_names(data, classes), _image_paths(args.images), min(top, classes))
    return 0


def cmd_classify(args):
    net = _load_for_inference(args, args.cfg, args.weights)
    classes = net.layers[-1].outputs
    _predict(net, [str(i) for i in range(classes)], _image_paths(args.images),
             min(args.t or 5, classes))
    return 0


def cmd_fuse(args):
    """Fold every batch norm into its layer: an inference-only cfg and weights."""
    from .cfgedit import CfgDocument
    from .network import Network
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    net.load_weights(args.weights)
    folded = [layer.index for layer in net.layers
              if layer.type in ("convolutional", "connected") and layer.batch_normalize]
    net.fold_batchnorm()
    doc = CfgDocument.load(args.cfg)
    for i in folded:
        doc.layer(i).set("batch_normalize", 0,
                         comment="folded into the weights by darknet_py fuse")
    doc.save(args.out_cfg)
    net.save_weights(args.out_weights)
    print(f"Folded batch norm of {len(folded)} layers into {args.out_weights}; "
          f"inference cfg {args.out_cfg}")
    return 0


def cmd_partial(args):
    """Darknet's partial: the first N layers' weights, seen reset (a *.conv.N backbone)."""
    from .network import Network
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    net.load_weights(args.weights, partial=True)
    net.seen = 0
    net.save_weights(args.out, cutoff=args.n)
    print(f"Saved the first {min(args.n, len(net.layers))} layers of {args.weights} to {args.out}")
    return 0


def cmd_reset(args):
    """The same weights with seen = 0 (training schedules start over)."""
    from .network import Network
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    net.load_weights(args.weights)
    net.seen = 0
    net.save_weights(args.out)
    print(f"Saved {args.out} with seen = 0")
    return 0


def cmd_data_mnist(args):
    from .mnist_download import download_mnist
    download_mnist(args.dir)
    print(f"MNIST is in {args.dir}; point a .data file's train= and valid= at "
          f"{os.path.join(args.dir, 'train-images-idx3-ubyte.gz')} and "
          f"{os.path.join(args.dir, 't10k-images-idx3-ubyte.gz')}")
    return 0


def _device_flags(p):
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                   help="where to compute (auto: the GPU when CuPy finds one)")
    p.add_argument("-i", "--gpu-index", type=int, default=0, metavar="N",
                   help="which GPU (Darknet's -i)")
    p.add_argument("-nogpu", "--nogpu", action="store_true", help="use the CPU (Darknet's -nogpu)")


def _train_flags(p):
    _device_flags(p)
    p.add_argument("--max-batches", type=int, metavar="N",
                   help="stop after N iterations (default: max_batches from the cfg)")
    p.add_argument("-clear", "--clear", action="store_true",
                   help="reset the seen-images counter of the loaded weights")
    p.add_argument("--resume", action="store_true",
                   help="continue from backup/<cfg>_last.weights with the same schedule")
    p.add_argument("--seed", type=int, help="seed for initialisation, data order and dropout")
    p.add_argument("--backup-every", type=int, default=100, metavar="N",
                   help="write backup/<cfg>_last.weights every N iterations (default 100)")
    p.add_argument("--darknet-lines", action="store_true",
                   help="print Darknet's per-iteration lines instead of a progress bar")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="darknet_py",
        description="Darknet's cfg-driven neural networks in Python.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"darknet_py {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    cfg = commands.add_parser("cfg", help="inspect and create .cfg files")
    cfg_commands = cfg.add_subparsers(dest="cfg_command", metavar="SUBCOMMAND")
    cfg_commands.required = True
    summary = cfg_commands.add_parser(
        "summary", help="print Darknet's layer table with parameter counts")
    summary.add_argument("cfg", help="a Darknet .cfg file")
    summary.add_argument("--strict", action="store_true",
                         help="treat unused options and other warnings as errors")
    summary.set_defaults(func=cmd_cfg_summary)
    new = cfg_commands.add_parser(
        "new", help="a ready-to-train cfg from a template: classes, filters, max_batches, steps")
    new.add_argument("--from", dest="template", required=True, metavar="TEMPLATE",
                     help="yolov3-tiny, yolov2-tiny, mnist, or a path to a .cfg")
    new.add_argument("--classes", type=int, required=True, metavar="N")
    new.add_argument("--size", metavar="WxH",
                     help="network width x height (multiples of 32 for yolo/region)")
    new.add_argument("--anchors", metavar="W,H,...",
                     help="anchor sizes in network pixels, e.g. from calc_anchors")
    new.add_argument("-o", "--output", metavar="OUT", help="output .cfg (default: stdout)")
    new.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    new.set_defaults(func=cmd_cfg_new)

    train = commands.add_parser("train", help="train a network: darknet_py train CFG DATA [WEIGHTS]")
    train.add_argument("cfg")
    train.add_argument("data")
    train.add_argument("weights", nargs="?", help="initial weights (a *.conv.N backbone is fine)")
    _train_flags(train)
    train.set_defaults(func=cmd_train)

    classifier = commands.add_parser("classifier", help="Darknet's classifier commands")
    csub = classifier.add_subparsers(dest="classifier_command", metavar="SUBCOMMAND")
    csub.required = True
    ctrain = csub.add_parser("train", help="classifier train DATA CFG [WEIGHTS]")
    ctrain.add_argument("data")
    ctrain.add_argument("cfg")
    ctrain.add_argument("weights", nargs="?")
    _train_flags(ctrain)
    ctrain.set_defaults(func=cmd_classifier_train)
    cvalid = csub.add_parser("valid", help="classifier valid DATA CFG WEIGHTS: top-1/top-k")
    cpredict = csub.add_parser("predict", help="classifier predict DATA CFG WEIGHTS [IMAGE...]")
    for p in (cvalid, cpredict):
        p.add_argument("data")
        p.add_argument("cfg")
        p.add_argument("weights")
        p.add_argument("-t", type=int, default=0, metavar="K",
                       help="top K (default: top= from the .data file)")
        _device_flags(p)
    cpredict.add_argument("images", nargs="*", help="images (none: read paths from stdin)")
    cvalid.set_defaults(func=cmd_classifier_valid)
    cpredict.set_defaults(func=cmd_classifier_predict)

    classify = commands.add_parser("classify", help="classify CFG WEIGHTS [IMAGE...]: top-5")
    classify.add_argument("cfg")
    classify.add_argument("weights")
    classify.add_argument("images", nargs="*")
    classify.add_argument("-t", type=int, default=0, metavar="K")
    _device_flags(classify)
    classify.set_defaults(func=cmd_classify)

    fuse = commands.add_parser(
        "fuse", help="fuse CFG WEIGHTS OUT_CFG OUT_WEIGHTS: fold batch norm into the weights")
    for name in ("cfg", "weights", "out_cfg", "out_weights"):
        fuse.add_argument(name)
    fuse.set_defaults(func=cmd_fuse)
    partial = commands.add_parser("partial",
                                  help="partial CFG WEIGHTS OUT N: keep the first N layers")
    partial.add_argument("cfg")
    partial.add_argument("weights")
    partial.add_argument("out")
    partial.add_argument("n", type=int)
    partial.set_defaults(func=cmd_partial)
    reset = commands.add_parser("reset", help="reset CFG WEIGHTS OUT: the weights with seen = 0")
    reset.add_argument("cfg")
    reset.add_argument("weights")
    reset.add_argument("out")
    reset.set_defaults(func=cmd_reset)

    data = commands.add_parser("data", help="datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    mnist = dsub.add_parser("mnist", help="download the full MNIST (70,000 digits) into DIR")
    mnist.add_argument("dir")
    mnist.set_defaults(func=cmd_data_mnist)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except DarknetError as e:
        print(f"darknet_py: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("darknet_py: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:            # e.g. `darknet_py cfg summary x.cfg | head`
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
