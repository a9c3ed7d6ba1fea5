"""Darknet's ``detector train|test|demo|map|valid|recall|calc_anchors`` (pj:examples/detector.c,
with AlexeyAB's map, calc_anchors and demo's -out_filename) and ``detect CFG WEIGHTS IMAGE...``."""

import argparse
import json
import os
import sys
import time

from ..atomic import atomic_open, atomic_write
from ..box import do_nms_sort
from ..cfg.parser import read_cfg
from ..data.datacfg import DataCfg, class_names, read_lines
from ..data.detaug import DetectionSet
from ..detection.anchors import anchors_report, calc_anchors, format_anchors
from ..detection.demo import annotate_video, frame_count
from ..detection.detect import (ABSURD_SIZE, detect_image, detection_lines, detections_json,
                                get_network_boxes, heads_are_finite, network_classes)
from ..detection.evaluate import detections_for_map, recall_per_image, validation_results
from ..detection.mapeval import evaluate_map, format_map_table
from ..detection.tree import read_map
from ..errors import DarknetError
from ..image import draw_detections
from ..train.trainer import progress_bar
from .common import (at_least, between, command_group, dont_show, image_paths, inference_flags, letter_box,
                     load_for_inference, positionals, training_boxes)
from .train import add_darknet_train, run_training

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def cmd_detector_train(args):
    return run_training(args, detector=True)


def _inputs(items):
    """Image paths from arguments that are images, folders or list files (.txt)."""
    for item in items:
        if os.path.isdir(item):
            for name in sorted(os.listdir(item)):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    yield os.path.join(item, name)
        elif item.lower().endswith(".txt") or item.lower().endswith(".list"):
            yield from read_lines(item, "image list")
        else:
            yield item


def _young_weights_hint(net, enough=1000):
    """Darknet users' 'no detections after training': say when the weights are barely trained
    (their header's seen counter, in iterations of this cfg's batch)."""
    iterations = net.seen // max(1, net.options.cfg_batch)
    if iterations >= enough:
        return ""
    return (f" (the weights have seen {net.seen} images, {iterations} iterations of batch "
            f"{net.options.cfg_batch}: a detector usually needs thousands)")


def _save_labels(path, dets, classes, thresh):
    """-save_labels: the detections as a YOLO label file beside the image."""
    rows = [f"{c} {d.bbox.x:.6f} {d.bbox.y:.6f} {d.bbox.w:.6f} {d.bbox.h:.6f}"
            for d in dets for c in range(classes) if d.prob[c] > thresh]
    target = os.path.splitext(path)[0] + ".txt"
    if os.path.exists(target):            # never overwrite ground-truth labels
        target = os.path.splitext(path)[0] + ".pred.txt"
    with open(target, "w") as f:
        f.write("".join(r + "\n" for r in rows))


def _detect(args, net, names, images):
    """pj test_detector over every image: the lines, the drawn picture, and with -out the
    JSON of AlexeyAB's -out."""
    paths = list(_inputs(images))
    if not paths:
        raise DarknetError(f"no images in {', '.join(map(str, images)) or 'the input'} "
                           "(images, folders of images or .txt lists)")
    classes = network_classes(net)
    results = []
    dropped = []
    for n, path in enumerate(paths):
        t0 = time.perf_counter()
        im, dets = detect_image(net, path, args.thresh, args.hier, args.nms, dropped=dropped)
        h, w = im.shape[1], im.shape[2]
        print(f"{path}: Predicted in {(time.perf_counter() - t0) * 1000:f} milli-seconds.")
        if not heads_are_finite(net):
            why = ("fp16 ends at 65504: try --precision bf16 or fp32" if
                   net.precision.name == "fp16" else "the weights look untrained or broken")
            print(f"warning: the network's outputs for {path} are not all finite (NaN or inf): "
                  f"{why}", file=sys.stderr)
        lines = detection_lines(dets, names, args.thresh, w, h, ext_output=args.ext_output)
        for line in lines:
            print(line)
        if not lines:
            # the raw scores below the threshold, from the same forward pass
            low = get_network_boxes(net, w, h, 0.0, args.hier, 1)
            do_nms_sort(low, classes, args.nms)
            best = sorted(((float(d.prob[c]), c) for d in low for c in range(classes)),
                          reverse=True)[:3]
            shown = ", ".join(f"{names[c]} {100 * p:.1f}%" for p, c in best) or "none"
            print(f"nothing above -thresh {args.thresh}; the highest scores: {shown}"
                  f"{_young_weights_hint(net)}")
        out = "predictions.jpg" if len(paths) == 1 else \
            os.path.splitext(os.path.basename(path))[0] + "_predictions.jpg"
        if args.out_dir:
            os.makedirs(args.out_dir, exist_ok=True)
            out = os.path.join(args.out_dir, out)
        draw_detections(im, dets, names, args.thresh, out, classes=classes)
        if args.save_labels:
            _save_labels(path, dets, classes, args.thresh)
        results.append({"frame_id": n + 1, "filename": path,
                        "objects": detections_json(dets, names, args.thresh, w, h)})
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    if sum(dropped):
        print(f"warning: dropped {sum(dropped)} boxes of non-finite or absurd size (over "
              f"{ABSURD_SIZE:g} times the image) before NMS: the weights look untrained or "
              f"broken{_young_weights_hint(net)}", file=sys.stderr)
    return 0


def _names_for(data_path, classes):
    return class_names(DataCfg(data_path), classes, say=True) if data_path else \
        [str(i) for i in range(classes)]


def cmd_detector_test(args):
    net = load_for_inference(args, args.cfg, args.weights)
    names = _names_for(args.data, network_classes(net))
    return _detect(args, net, names, args.images or list(image_paths([])))


def cmd_detect(args):
    net = load_for_inference(args, args.cfg, args.weights)
    classes = network_classes(net)
    names = [str(i) for i in range(classes)]
    if args.names:
        names = read_lines(args.names, "names file")
    return _detect(args, net, names, args.images)


def cmd_detector_demo(args):
    """AB's ``detector demo DATA CFG WEIGHTS VIDEO -out_filename OUT``: the annotated video and
    the frames per second of each step (pj:src/demo.c prints its FPS as it goes)."""
    net = load_for_inference(args, args.cfg, args.weights)
    names = _names_for(args.data, network_classes(net))
    out = args.out_filename or os.path.splitext(os.path.basename(args.video))[0] + \
        "_predictions.mp4"
    bar = progress_bar(frame_count(args.video), "demo")
    bar.unit = "frame"
    times = annotate_video(net, names, args.video, out, args.thresh, args.nms,
                           progress=bar.update)
    bar.close()
    print(times.line())
    print(f"Wrote {out}")
    return 0


def _valid_set(args):
    """The network, the .data file, the classes and the valid= list of a ``detector
    map|valid|recall DATA CFG WEIGHTS`` command."""
    net = load_for_inference(args, args.cfg, args.weights)
    data = DataCfg(args.data)
    classes = network_classes(net)
    return net, data, classes, DetectionSet(data.file("valid", required=True), classes)


def cmd_detector_map(args):
    net, _, classes, valid = _valid_set(args)
    bar = progress_bar(len(valid.paths), "mAP")
    dets, truths = detections_for_map(net, valid, progress=bar.update)
    bar.close()
    result = evaluate_map(dets, truths, classes, iou_thresh=args.iou_thresh,
                          conf_thresh=args.thresh, points=args.points)
    print(format_map_table(result, _names_for(args.data, classes)))
    return 0


def cmd_detector_valid(args):
    """pj validate_detector: per-class result files (VOC, 1-based pixel boxes) or COCO JSON."""
    net, data, classes, valid = _valid_set(args)
    names = _names_for(args.data, classes)
    kind = data.get("eval", "voc")
    prefix = args.prefix or ("results/comp4_det_test_" if kind != "coco" else "results/")
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    bar = progress_bar(len(valid.paths), "valid")
    # pj validate_detector: the .data file's map= (read by a tree= [region]'s detections)
    table = read_map(data.file("map"), data.path, data.lines["map"], classes) \
        if "map" in data else None
    lines, coco = validation_results(net, valid, classes, progress=bar.update, map=table)
    bar.close()
    if kind == "coco":
        out = prefix + "coco_results.json"
        atomic_write(out, [json.dumps(coco).encode()])
        print(f"Wrote {out}")
    else:
        for j in range(classes):
            atomic_write(f"{prefix}{names[j]}.txt", [ln.encode() for ln in lines[j]])
        print(f"Wrote {classes} files {prefix}<class>.txt")
    return 0


def cmd_detector_recall(args):
    """pj validate_detector_recall (list from valid=): proposals, IoU and recall per image."""
    net, _, _, valid = _valid_set(args)
    for r in recall_per_image(net, valid):
        print(f"{r.image:5d} {r.correct:5d} {r.total:5d}\t"
              f"RPs/Img: {r.proposals / (r.image + 1):.2f}\t"
              f"IOU: {r.iou_sum * 100 / max(r.total, 1):.2f}%\t"
              f"Recall:{100.0 * r.correct / max(r.total, 1):.2f}%")
    return 0


def cmd_detector_calc_anchors(args):
    classes = DataCfg(args.data).int("classes", 1, minimum=1)
    wh = training_boxes(args.data, args.width, args.height, classes)
    if len(wh) < args.num_of_clusters:
        raise DarknetError(f"{len(wh)} boxes in the training labels, fewer than "
                           f"-num_of_clusters {args.num_of_clusters}", args.data)
    anchors, avg_iou = calc_anchors(wh, args.num_of_clusters, seed=0)
    layers = 2 if args.num_of_clusters <= 6 else 3
    if args.cfg:
        layers = [s.int_list("mask", []) for s in read_cfg(args.cfg).layers
                  if s.type == "yolo"] or layers
    try:
        print(anchors_report(anchors, layers, classes, avg_iou=avg_iou))
    except ValueError as e:          # e.g. the cfg's masks name more anchors than -num_of_clusters
        raise DarknetError(str(e), args.cfg or args.data) from None
    # ab:src/detector.c calc_anchors also leaves the line in anchors.txt, for scripts
    with atomic_open("anchors.txt") as f:
        f.write((format_anchors(anchors) + "\n").encode())
    print("Saved anchors.txt")
    return 0


def points(text):
    """``-points``: 0 (the area) or a count of recall levels >= 2 (evaluate_map's rule)."""
    value = at_least(0)(text)
    if value == 1:
        raise argparse.ArgumentTypeError("expected 0 (the area) or a number of points >= 2, "
                                         "not '1'")
    return value


def _thresh_nms(p, what="report"):
    p.add_argument("-thresh", "--thresh", type=between(0, 1), default=0.25,
                   help=f"{what} objects with a probability above this (default .25)")
    p.add_argument("-nms", "--nms", type=between(0, 1), default=0.45,
                   help="non-maximum suppression: the overlap above which the weaker box of a "
                        "class goes (default .45); 0: none, as pj's `if (nms)`")


def _detect_flags(p):
    """The flags of ``detector test`` and ``detect``: AlexeyAB's spellings and long ones."""
    _thresh_nms(p)
    p.add_argument("-hier", "--hier", type=between(0, 1), default=0.5,
                   help="a tree= (YOLO9000) [region]: the class goes down the tree while the "
                        "product of its probabilities stays above this (default .5)")
    p.add_argument("-ext_output", "--ext-output", dest="ext_output", action="store_true",
                   help="also print each box in pixels")
    p.add_argument("-out", "--out", help="write the detections as JSON to this file")
    p.add_argument("--out-dir", help="folder for the drawn pictures (default: here)")
    p.add_argument("-save_labels", "--save-labels", dest="save_labels", action="store_true",
                   help="write YOLO label files next to the images")
    inference_flags(p)
    dont_show(p)
    letter_box(p)


def register(subparsers):
    """``detector ...`` and, after it, ``detect``."""
    dsub = command_group(subparsers, "detector", "Darknet's detector commands")
    add_darknet_train(dsub, "detector train DATA CFG [WEIGHTS]", cmd_detector_train)
    dtest = dsub.add_parser("test", help="detector test DATA CFG WEIGHTS [IMAGE|DIR|LIST...]")
    positionals(dtest, "data", "cfg", "weights")
    dtest.add_argument("images", nargs="*", help="images, folders or .txt lists (none: stdin)")
    _detect_flags(dtest)
    dtest.set_defaults(func=cmd_detector_test)
    detect = subparsers.add_parser("detect", help="detect CFG WEIGHTS IMAGE...: detector test "
                                                  "without a .data file")
    detect.add_argument("cfg")
    detect.add_argument("weights")
    detect.add_argument("images", nargs="+")
    detect.add_argument("--names", help="a .names file (default: class numbers)")
    _detect_flags(detect)
    detect.set_defaults(func=cmd_detect)

    ddemo = dsub.add_parser("demo", help="detector demo DATA CFG WEIGHTS VIDEO "
                            "[-out_filename OUT.mp4]: the video with its detections drawn")
    positionals(ddemo, "data", "cfg", "weights", "video")
    ddemo.add_argument("-out_filename", "--out-filename", dest="out_filename",
                       help="the annotated video to write (default: VIDEO's name + "
                            "_predictions.mp4, here)")
    _thresh_nms(ddemo, "draw")
    inference_flags(ddemo)
    dont_show(ddemo)
    letter_box(ddemo)
    ddemo.set_defaults(func=cmd_detector_demo)

    dmap = dsub.add_parser("map", help="detector map DATA CFG WEIGHTS: AP per class and mAP")
    positionals(dmap, "data", "cfg", "weights")
    dmap.add_argument("-thresh", "--thresh", type=between(0, 1), default=0.25,
                      help="confidence for precision/recall/F1 (default .25)")
    dmap.add_argument("-iou_thresh", "--iou-thresh", dest="iou_thresh", type=between(0, 1),
                      default=0.5, help="the overlap with a truth box that counts as found "
                                        "(default .5)")
    dmap.add_argument("-points", "--points", type=points, default=0,
                      help="0: area under the curve (default); 11: VOC2007's 11 points; "
                           "101: COCO's")
    inference_flags(dmap)
    dont_show(dmap)
    letter_box(dmap)
    dmap.set_defaults(func=cmd_detector_map)
    dvalid = dsub.add_parser("valid", help="detector valid DATA CFG WEIGHTS: result files "
                             "(eval=voc per-class .txt, eval=coco JSON) for external scoring")
    drecall = dsub.add_parser("recall", help="detector recall DATA CFG WEIGHTS: recall and IoU "
                              "per image")
    for p in (dvalid, drecall):
        positionals(p, "data", "cfg", "weights")
        inference_flags(p)
        letter_box(p)
    dvalid.add_argument("-prefix", "--prefix", help="output path prefix (default "
                        "results/comp4_det_test_)")
    dvalid.set_defaults(func=cmd_detector_valid)
    drecall.set_defaults(func=cmd_detector_recall)
    danchors = dsub.add_parser("calc_anchors", help="detector calc_anchors DATA "
                               "-num_of_clusters K -width W -height H")
    danchors.add_argument("data")
    danchors.add_argument("-num_of_clusters", "--num-of-clusters", dest="num_of_clusters",
                          type=at_least(1), default=6)
    danchors.add_argument("-width", "--width", type=at_least(1), default=416)
    danchors.add_argument("-height", "--height", type=at_least(1), default=416)
    danchors.add_argument("--cfg", help="take the yolo masks from this cfg")
    dont_show(danchors)
    danchors.set_defaults(func=cmd_detector_calc_anchors)
