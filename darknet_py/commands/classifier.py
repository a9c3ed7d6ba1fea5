"""Darknet's ``classifier train|valid|predict`` (pj:examples/classifier.c) and ``classify``."""

import sys
import time

from ..data.datacfg import DataCfg, class_names
from ..data.datasets import load_classification
from ..predict import class_probabilities, top_classes
from ..train.classifier import evaluate
from .common import (at_least, command_group, image_paths, inference_flags, load_for_inference,
                     positionals)
from .train import add_darknet_train, run_training


def cmd_classifier_train(args):
    return run_training(args)


def cmd_classifier_valid(args):
    data = DataCfg(args.data)
    classes = data.int("classes", 2, minimum=1)
    top = args.t or max(1, data.int("top", 1))
    net = load_for_inference(args, args.cfg, args.weights)
    dataset = load_classification(data, "valid", classes)
    top1, topk = evaluate(net, dataset, top, progress=True)
    print(f"{len(dataset)}: top 1: {top1:f}, top {top}: {topk:f}")
    return 0


def _predict(net, names, paths, top):
    """pj predict_classifier: for each image its name and time, then its top classes, all on
    stdout so that piped output can be matched to the images (the API's path:
    darknet_py.predict)."""
    for path in paths:
        t0 = time.perf_counter()
        probs = class_probabilities(net, [path])[0]
        print(f"{path}: Predicted in {time.perf_counter() - t0:f} seconds.")
        for i in top_classes(probs, top):
            print(f"{100 * probs[i]:5.2f}%: {names[i]}")
        sys.stdout.flush()


def cmd_classifier_predict(args):
    data = DataCfg(args.data)
    classes = data.int("classes", 2, minimum=1)
    top = args.t or max(1, data.int("top", 1))
    net = load_for_inference(args, args.cfg, args.weights)
    _predict(net, class_names(data, classes, say=True), image_paths(args.images),
             min(top, classes))
    return 0


def cmd_classify(args):
    net = load_for_inference(args, args.cfg, args.weights)
    classes = net.layers[-1].outputs
    _predict(net, [str(i) for i in range(classes)], image_paths(args.images),
             min(args.t or 5, classes))
    return 0


def register(subparsers):
    csub = command_group(subparsers, "classifier", "Darknet's classifier commands")
    add_darknet_train(csub, "classifier train DATA CFG [WEIGHTS]", cmd_classifier_train)
    cvalid = csub.add_parser("valid", help="classifier valid DATA CFG WEIGHTS: top-1/top-k")
    cpredict = csub.add_parser("predict", help="classifier predict DATA CFG WEIGHTS [IMAGE...]")
    for p in (cvalid, cpredict):
        positionals(p, "data", "cfg", "weights")
        p.add_argument("-t", type=at_least(1), default=None, metavar="K",
                       help="top K (default: top= from the .data file)")
        inference_flags(p)
    cpredict.add_argument("images", nargs="*", help="images (none: read paths from stdin)")
    cvalid.set_defaults(func=cmd_classifier_valid)
    cpredict.set_defaults(func=cmd_classifier_predict)


def register_classify(subparsers):
    """``classify CFG WEIGHTS [IMAGE...]``: the top 5 of each image, classes named by number."""
    classify = subparsers.add_parser("classify",
                                     help="classify CFG WEIGHTS [IMAGE...]: top-5")
    classify.add_argument("cfg")
    classify.add_argument("weights")
    classify.add_argument("images", nargs="*")
    classify.add_argument("-t", type=at_least(1), default=None, metavar="K",
                          help="top K (default 5)")
    inference_flags(classify)
    classify.set_defaults(func=cmd_classify)
