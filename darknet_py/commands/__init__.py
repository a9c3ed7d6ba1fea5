"""The ``darknet_py`` command line: Darknet's command lines (``detector train DATA CFG``,
``classifier predict ...``, AlexeyAB's flags) and darknet_py's own (``cfg``, ``data``, ``train
CFG DATA``), one module per group.  Errors are one line on stderr and a non-zero exit code."""

import argparse
import os
import sys
import warnings

from .. import __version__
from ..cfg.parser import CfgWarning
from ..errors import DarknetError
from ..nn.weights import WeightsWarning
from . import cfg, classifier, data, detector, export, tools, train


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line on stderr: a cfg's or a weights file's as they are
    (``file:line: warning: ...``)."""
    if issubclass(category, (CfgWarning, WeightsWarning)):
        print(str(message), file=sys.stderr)
    else:
        print(f"warning: {message}", file=sys.stderr)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="darknet_py",
        description="Darknet's cfg-driven neural networks in Python.")
    parser.add_argument("--version", action="version", version=f"darknet_py {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    cfg.register(commands)
    train.register(commands)
    classifier.register(commands)
    detector.register(commands)              # detector ..., detect
    classifier.register_classify(commands)
    tools.register(commands)                 # fuse partial reset rgbgr ops speed version
    data.register(commands)
    export.register(commands)
    return parser


def _subcommands(parser):
    """{command: {subcommand names}} of the commands that have subcommands."""
    def choices(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices
        return {}
    return {name: set(choices(sub)) for name, sub in choices(parser).items() if choices(sub)}


def _flags_after_subcommand(parser, argv):
    """Darknet takes flags anywhere, HK's even before the subcommand
    (``detector -map -dont_show train DATA CFG``): move those after it for argparse."""
    if len(argv) > 2 and argv[1].startswith("-") and argv[1] not in ("-h", "--help"):
        subs = _subcommands(parser).get(argv[0], set())
        for i in range(2, len(argv)):
            if argv[i] in subs:
                return [argv[0], argv[i], *argv[1:i], *argv[i + 1:]]
    return argv


def main(argv=None):
    """Run one command line (default ``sys.argv[1:]``): its exit status.  A
    :class:`DarknetError` or an unwritable file is one line on stderr and status 2."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:                        # pj:examples/darknet.c main prints its usage, status 0
        parser.print_help()
        return 0
    args = parser.parse_args(_flags_after_subcommand(parser, argv))
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except DarknetError as e:
        print(f"darknet_py: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("darknet_py: interrupted", file=sys.stderr)
        return 130
    except OSError as e:               # a file that cannot be written (a full disk, a folder...)
        if isinstance(e, BrokenPipeError):      # e.g. `darknet_py cfg summary x.cfg | head`
            sys.stdout = open(os.devnull, "w")
            return 0
        where = f"{e.filename}: " if e.filename else ""
        print(f"darknet_py: {where}error: {e.strerror or e}", file=sys.stderr)
        return 2
