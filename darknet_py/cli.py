"""The ``darknet_py`` command line.  Errors are one line on stderr and a non-zero exit code."""

import argparse
import sys
import warnings

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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="darknet_py",
        description="Darknet's cfg-driven neural networks in Python.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"darknet_py {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    cfg = commands.add_parser("cfg", help="inspect .cfg files")
    cfg_commands = cfg.add_subparsers(dest="cfg_command", metavar="SUBCOMMAND")
    cfg_commands.required = True
    summary = cfg_commands.add_parser(
        "summary", help="print Darknet's layer table with parameter counts")
    summary.add_argument("cfg", help="a Darknet .cfg file")
    summary.add_argument("--strict", action="store_true",
                         help="treat unused options and other warnings as errors")
    summary.set_defaults(func=cmd_cfg_summary)
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


if __name__ == "__main__":
    sys.exit(main())
