"""What several command groups share: Darknet's device flags (``-i``, ``-nogpu``), AlexeyAB's
``-dont_show`` and ``-letter_box``, loading a network for inference and reading image paths."""

import argparse
import sys

from ..data.datacfg import DataCfg, read_lines
from ..errors import DarknetError
from ..data.labels import label_path_for
from ..detection.anchors import boxes_wh_from_labels
from ..nn.precision import PRECISIONS
from ..predict import load_network


def at_least(minimum):
    """An argparse type: a whole number >= minimum (argparse then names the flag)."""
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, not {text!r}")
        return value
    return parse


def between(low, high):
    """An argparse type: a number from low to high (a probability, an overlap); NaN, inf and
    anything outside are refused naming the flag (-thresh -1 would report every box, -nms 5
    none suppressed: silently not what was asked)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:     # NaN compares False
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, "
                                             f"not {text!r}")
        return value
    return parse


def device_flags(p):
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                   help="where to compute (auto: the GPU when CuPy finds one)")
    p.add_argument("-i", "--gpu-index", type=at_least(0), default=0, metavar="N",
                   help="which GPU (Darknet's -i)")
    p.add_argument("-nogpu", "--nogpu", action="store_true", help="use the CPU (Darknet's -nogpu)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the convolutions' arithmetic: fp32 (exact), tf32, fp16 or bf16 (half "
                        "with float32 accumulation and master weights); default: the cfg's "
                        "precision=, else fp32")
    p.add_argument("--no-graphs", dest="no_graphs", action="store_true",
                   help="GPU: run the network layer by layer instead of replaying CUDA graphs "
                        "of its passes (one launch per step instead of one per layer)")


def inference_flags(p):
    """The device flags, and ``--no-fuse`` for the commands that only run the network forward."""
    device_flags(p)
    p.add_argument("--no-fuse", dest="no_fuse", action="store_true",
                   help="keep batch norm as its own step with the rolling statistics (exact to "
                        "the weights file) instead of folding it into the convolution weights")


def dont_show(p):
    p.add_argument("-dont_show", "--dont-show", dest="dont_show", action="store_true",
                   help="accepted for AlexeyAB's command lines: darknet_py never opens a window")


def letter_box(p):
    p.add_argument("-letter_box", "--letter-box", dest="letter_box", action="store_true",
                   help="letterbox the images (keep the aspect ratio) even where the cfg says "
                        "letter_box=0")


def command_group(subparsers, name, help):
    """A command with subcommands (``detector train``, ``cfg check``...): the subparsers of
    ``name``, one of which is required."""
    group = subparsers.add_parser(name, help=help)
    sub = group.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
    sub.required = True
    return sub


def positionals(p, *names):
    """Darknet's positional arguments, in its order (``DATA CFG WEIGHTS``, ``CFG WEIGHTS``...)."""
    for name in names:
        p.add_argument(name)


def device(args):
    """The --device of ``args``; Darknet's -nogpu wins."""
    return "cpu" if getattr(args, "nogpu", False) else args.device


def load_for_inference(args, cfg, weights):
    """The network of ``cfg`` at batch 1 on the chosen device with ``weights`` loaded, as the
    Python API loads it (darknet_py.predict.load_network): batch norm folded unless
    ``--no-fuse``, AB's ``-letter_box`` where given."""
    return load_network(cfg, weights, device(args), args.gpu_index,
                        fuse=not getattr(args, "no_fuse", False),
                        letter_box=getattr(args, "letter_box", False),
                        precision=getattr(args, "precision", None),
                        graphs=not getattr(args, "no_graphs", False))


def image_paths(images):
    """``images``, or (none given) paths read from stdin after Darknet's prompt, as pj's
    test_detector and predict_classifier do."""
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


def training_boxes(data_path, width, height, classes=None):
    """The (n, 2) widths and heights, in pixels of a ``width`` x ``height`` network, of the
    boxes labelled for the train= list of a .data file (the input of k-means anchors)."""
    data = DataCfg(data_path)
    paths = read_lines(data.file("train", required=True), "train list")
    return boxes_wh_from_labels([label_path_for(p) for p in paths], width, height, classes)


def file_kind(path):
    """"cfg" (its first option line is a ``[section]`` header), "data" (``key=value`` lines
    before any header, as Darknet's read_data_cfg reads them), or None (unreadable, empty)."""
    try:
        with open(path, "rb") as f:
            head = f.read(65536).decode("utf-8", "replace")
    except OSError:
        return None
    for line in head.splitlines():
        text = "".join(line.split())
        if not text or text[0] in "#;":
            continue
        if text[0] == "[":
            return "cfg"
        return "data" if "=" in text else None
    return None


def check_argument_order(cfg, data, usage):
    """A .data file given where the .cfg goes (and the .cfg where the .data goes) is an error
    saying so, before either is parsed (whose errors would be about the wrong file)."""
    kinds = file_kind(cfg), file_kind(data)
    if kinds[0] == "data" or kinds[1] == "cfg":
        which = f"{cfg} is a .data file" if kinds[0] == "data" else f"{data} is a .cfg file"
        raise DarknetError(f"arguments swapped? {usage} ({which})")
