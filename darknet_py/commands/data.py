"""``darknet_py data check|shapes|mnist``: check a detection dataset, make the shapes set,
download MNIST."""

import os

from ..data.check import check_dataset
from ..data.mnist import download_mnist
from ..data.shapes import add_shapes_arguments, run_shapes
from .common import command_group


def cmd_data_check(args):
    """Every problem of the dataset (and its cfg) with file:line, a summary per list, then a
    count; exit status 1 when there are errors."""
    report = check_dataset(args.data, args.cfg)
    for _, text in report.problems:
        print(text)
    for split in report.splits:
        print(split.summary(report.names))
    print(f"{args.data}: {report.images} images, {report.errors} error(s), "
          f"{report.warnings} warning(s)")
    return 1 if report.errors else 0


def cmd_data_shapes(args):
    return run_shapes(args)


def cmd_data_mnist(args):
    download_mnist(args.dir)
    print(f"MNIST is in {args.dir}; point a .data file's train= and valid= at "
          f"{os.path.join(args.dir, 'train-images-idx3-ubyte.gz')} and "
          f"{os.path.join(args.dir, 't10k-images-idx3-ubyte.gz')}")
    return 0


def register(subparsers):
    dsub = command_group(subparsers, "data", "datasets")
    mnist = dsub.add_parser("mnist", help="download the full MNIST (70,000 digits) into DIR")
    mnist.add_argument("dir")
    mnist.set_defaults(func=cmd_data_mnist)
    dcheck = dsub.add_parser("check", help="data check DATA [CFG]: images, labels, classes")
    dcheck.add_argument("data")
    dcheck.add_argument("cfg", nargs="?")
    dcheck.set_defaults(func=cmd_data_check)
    shapes = dsub.add_parser("shapes", help="generate the coloured-shapes detection dataset")
    add_shapes_arguments(shapes)      # OUT --n --size --seed --valid-fraction --format ...
    shapes.set_defaults(func=cmd_data_shapes)
