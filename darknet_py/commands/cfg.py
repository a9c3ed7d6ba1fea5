"""``darknet_py cfg summary|check|new``: inspect a .cfg and write one from a template."""

import os
import sys

from ..cfg.check import main_check
from ..cfg.new import new_cfg, template_path
from ..cfg.parser import read_cfg
from ..detection.anchors import calc_anchors
from ..errors import DarknetError
from ..nn.network import Network
from .common import at_least, command_group, training_boxes


def cmd_cfg_summary(args):
    net = Network.from_cfg(args.cfg, batch=1, strict=args.strict, seed=0)
    print(net.summary())
    return 0


def cmd_cfg_check(args):
    return main_check(args.cfg, args.data, strict=args.strict, darknet_only=args.darknet_only)


def _anchors_from_data(data_path, template, size):
    """k-means anchors (1 - IoU) of the training boxes, as many as the template's num,
    in pixels of the network size."""
    cfg = read_cfg(template_path(template))
    heads = [s for s in cfg.layers if s.type in ("yolo", "region")]
    if not heads:
        raise DarknetError(f"--anchors: {template} has no [yolo] or [region] layer")
    k = heads[-1].int("num", 1)
    w, h = cfg.net.int("width", 416), cfg.net.int("height", 416)
    if size:
        w, h = (int(v) for v in size.lower().split("x")) if "x" in size.lower() else \
            (int(size), int(size))
    wh = training_boxes(data_path, w, h)
    if len(wh) < k:
        raise DarknetError(f"--anchors: {len(wh)} boxes in the training labels, fewer than "
                           f"the {k} anchors the template needs", data_path)
    anchors, _ = calc_anchors(wh, k, seed=0)
    return [round(float(v)) for v in anchors.ravel()]


def cmd_cfg_new(args):
    anchors = None
    if args.anchors and os.path.isfile(args.anchors):
        anchors = _anchors_from_data(args.anchors, args.template, args.size)
    elif args.anchors:
        try:
            values = [float(v) for v in args.anchors.replace(",", " ").split()]
        except ValueError:
            raise DarknetError(f"--anchors '{args.anchors}': expected a .data file or numbers "
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


def register(subparsers):
    cfg_commands = command_group(subparsers, "cfg", "inspect and create .cfg files")
    summary = cfg_commands.add_parser(
        "summary", help="print Darknet's layer table with parameter counts")
    summary.add_argument("cfg", help="a Darknet .cfg file")
    summary.add_argument("--strict", action="store_true",
                         help="treat unused options and other warnings as errors")
    summary.set_defaults(func=cmd_cfg_summary)
    check = cfg_commands.add_parser(
        "check", help="report every problem in a cfg (and .data/.names) at once, with fixes")
    check.add_argument("cfg", help="a Darknet .cfg file")
    check.add_argument("data", nargs="?", help="a .data file: its classes and names are "
                       "checked against the cfg")
    check.add_argument("--strict", action="store_true",
                       help="warnings count as errors (exit status 1)")
    check.add_argument("--darknet-only", action="store_true",
                       help="the cfg is meant for Darknet alone: what darknet_py cannot build "
                            "([rnn], [gru], [local], tree=, ...) is a warning, not an error")
    check.set_defaults(func=cmd_cfg_check)
    new = cfg_commands.add_parser(
        "new", help="a ready-to-train cfg from a template: classes, filters, max_batches, steps")
    new.add_argument("--from", dest="template", required=True, metavar="TEMPLATE",
                     help="yolov3-tiny, yolov2-tiny, mnist, or a path to a .cfg")
    new.add_argument("--classes", type=at_least(1), required=True, metavar="N")
    new.add_argument("--size", metavar="WxH",
                     help="network width x height (multiples of 32 for yolo/region)")
    new.add_argument("--anchors", metavar="DATA|W,H,...",
                     help="a .data file (k-means anchors from its training boxes) or anchor "
                          "sizes in network pixels")
    new.add_argument("-o", "--output", metavar="OUT", help="output .cfg (default: stdout)")
    new.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    new.set_defaults(func=cmd_cfg_new)
