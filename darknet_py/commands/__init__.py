"""The ``darknet_py`` command line.  Errors are one line on stderr and a non-zero exit code."""

import argparse
import os
import sys
import warnings

import numpy as np

from ..cfg.parser import CfgWarning
from ..errors import DarknetError


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, CfgWarning):
        print(str(message), file=sys.stderr)
    else:
        print(f"warning: {message}", file=sys.stderr)


def cmd_cfg_summary(args):
    from ..nn.network import Network
    net = Network.from_cfg(args.cfg, batch=1, strict=args.strict, seed=0)
    print(net.summary())
    return 0


def cmd_cfg_check(args):
    from ..cfg.check import main_check
    return main_check(args.cfg, args.data, strict=args.strict)


def _anchors_from_data(data_path, template, size):
    """k-means anchors (1 - IoU) of the training boxes, as many as the template's num,
    in pixels of the network size."""
    from ..detection.anchors import boxes_wh_from_labels, calc_anchors
    from ..cfg.parser import read_cfg
    from ..cfg.new import template_path
    from ..data.datacfg import DataCfg, read_lines
    from ..data.labels import label_path_for
    cfg = read_cfg(template_path(template))
    heads = [s for s in cfg.layers if s.type in ("yolo", "region")]
    if not heads:
        raise DarknetError(f"--anchors: {template} has no [yolo] or [region] layer")
    k = heads[-1].int("num", 1)
    w, h = cfg.net.int("width", 416), cfg.net.int("height", 416)
    if size:
        w, h = (int(v) for v in size.lower().split("x")) if "x" in size.lower() else \
            (int(size), int(size))
    data = DataCfg(data_path)
    paths = read_lines(data.file("train", required=True), "train list")
    wh = boxes_wh_from_labels([label_path_for(p) for p in paths], w, h)
    if len(wh) < k:
        raise DarknetError(f"--anchors: {len(wh)} boxes in the training labels, fewer than "
                           f"the {k} anchors the template needs", data_path)
    anchors, _ = calc_anchors(wh, k, seed=0)
    return [round(float(v)) for v in anchors.ravel()]


def cmd_cfg_new(args):
    from ..cfg.new import new_cfg
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


def _device(args):
    return "cpu" if getattr(args, "nogpu", False) else args.device


def _spawn_replicas(gpus):
    """darknet_py ... -gpus 0,1,...: one process per GPU with torchrun's environment
    (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); returns the worst exit status."""
    import socket
    import subprocess
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("-gpus", "--gpus"):
            skip = True
            continue
        if a.startswith("--gpus=") or a.startswith("-gpus="):
            continue
        argv.append(a)
    procs = []
    for rank, gpu in enumerate(gpus):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank),
                   WORLD_SIZE=str(len(gpus)), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cmd = [sys.executable, "-m", "darknet_py", *argv, "--device", "gpu", "-i", str(gpu)]
        procs.append(subprocess.Popen(cmd, env=env))
    return max(p.wait() for p in procs)


def _train(args, cfg, data, weights, detector=False):
    from ..train.trainer import ClassifierTrainer, DetectorTrainer
    gpus = [int(g) for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    if len(gpus) > 1 and "WORLD_SIZE" not in os.environ:
        return _spawn_replicas(gpus)
    if len(gpus) == 1:
        args.device, args.gpu_index = "gpu", gpus[0]
    cls = DetectorTrainer if detector else ClassifierTrainer
    trainer = cls(cfg, data, weights, device=_device(args), gpu_index=args.gpu_index,
                  max_batches=args.max_batches, clear=args.clear, resume=args.resume,
                  seed=args.seed, backup_every=args.backup_every,
                  darknet_lines=args.darknet_lines, progress=not args.no_progress,
                  map=args.map if detector else True, save_weights_every=args.saveweights,
                  chart=args.chart, map_epochs=args.map_epochs, show_imgs=args.show_imgs,
                  loader_processes=args.loader_processes)
    return trainer.run()


def _head(cfg):
    from ..cfg.parser import read_cfg
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
        return _train(args, args.cfg, args.data, args.weights, detector=True)
    if kind is None:
        raise DarknetError("the cfg has no training head: end it with [softmax] (or [cost], "
                           "[logistic]) for a classifier", args.cfg)
    return _train(args, args.cfg, args.data, args.weights)


def cmd_detector_train(args):
    return _train(args, args.cfg, args.data, args.weights, detector=True)


def _inputs(items):
    """Image paths from arguments that are images, folders or list files (.txt)."""
    exts = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
    for item in items:
        if os.path.isdir(item):
            for name in sorted(os.listdir(item)):
                if name.lower().endswith(exts):
                    yield os.path.join(item, name)
        elif item.lower().endswith(".txt") or item.lower().endswith(".list"):
            from ..data.datacfg import read_lines
            yield from read_lines(item, "image list")
        else:
            yield item


def _detect(args, net, names, images):
    import json
    import time
    from ..detection.detect import (detect_image, detection_lines, detections_json, do_nms_sort,
                         draw_detections, get_network_boxes, heads_are_finite, network_classes)
    paths = list(_inputs(images))
    if not paths:
        raise DarknetError(f"no images in {', '.join(map(str, images)) or 'the input'} "
                           "(images, folders of images or .txt lists)")
    classes = network_classes(net)
    results = []
    for n, path in enumerate(paths):
        t0 = time.perf_counter()
        im, dets = detect_image(net, path, args.thresh, 0.5, args.nms)
        h, w = im.shape[1], im.shape[2]
        print(f"{path}: Predicted in {(time.perf_counter() - t0) * 1000:f} milli-seconds.")
        if not heads_are_finite(net):
            print(f"warning: the network's outputs for {path} are not all finite (NaN or inf): "
                  "the weights look untrained or broken", file=sys.stderr)
        lines = detection_lines(dets, names, args.thresh, w, h, ext_output=args.ext_output)
        for line in lines:
            print(line)
        if not lines:
            # the raw scores below the threshold, from the same forward pass
            low = get_network_boxes(net, w, h, 0.0, 0.5, 1)
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
            rows = [f"{c} {d.bbox.x:.6f} {d.bbox.y:.6f} {d.bbox.w:.6f} {d.bbox.h:.6f}"
                    for d in dets for c in range(classes) if d.prob[c] > args.thresh]
            target = os.path.splitext(path)[0] + ".txt"
            if os.path.exists(target):            # never overwrite ground-truth labels
                target = os.path.splitext(path)[0] + ".pred.txt"
            with open(target, "w") as f:
                f.write("".join(r + "\n" for r in rows))
        results.append({"frame_id": n + 1, "filename": path,
                        "objects": detections_json(dets, names, args.thresh, w, h)})
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def _young_weights_hint(net, enough=1000):
    """Darknet users' 'no detections after training': say when the weights are barely trained
    (their header's seen counter, in iterations of this cfg's batch)."""
    iterations = net.seen // max(1, net.options.cfg_batch)
    if iterations >= enough:
        return ""
    return (f" (the weights have seen {net.seen} images, {iterations} iterations of batch "
            f"{net.options.cfg_batch}: a detector usually needs thousands)")


def _names_for(data_path, classes):
    from ..data.datacfg import DataCfg, class_names
    return class_names(DataCfg(data_path), classes) if data_path else \
        [str(i) for i in range(classes)]


def cmd_detector_test(args):
    from ..detection.detect import network_classes
    net = _load_for_inference(args, args.cfg, args.weights)
    names = _names_for(args.data, network_classes(net))
    return _detect(args, net, names, args.images or list(_image_paths([])))


def cmd_detect(args):
    from ..detection.detect import network_classes
    net = _load_for_inference(args, args.cfg, args.weights)
    classes = network_classes(net)
    names = [str(i) for i in range(classes)]
    if args.names:
        from ..data.datacfg import read_lines
        names = read_lines(args.names, "names file")
    return _detect(args, net, names, args.images)


def cmd_detector_map(args):
    from ..data.datacfg import DataCfg
    from ..data.detaug import DetectionSet
    from ..detection.detect import network_classes
    from ..detection.mapeval import evaluate_map, format_map_table
    from ..train.trainer import detections_for_map
    net = _load_for_inference(args, args.cfg, args.weights)
    data = DataCfg(args.data)
    classes = network_classes(net)
    valid = DetectionSet(data.file("valid", required=True), classes)
    dets, truths = detections_for_map(net, valid, progress=True)
    result = evaluate_map(dets, truths, classes, iou_thresh=args.iou_thresh,
                          conf_thresh=args.thresh, points=args.points)
    print(format_map_table(result, _names_for(args.data, classes)))
    return 0


def cmd_detector_valid(args):
    """pj validate_detector: per-class result files (VOC, 1-based pixel boxes) or COCO JSON."""
    import json
    from ..data.datacfg import DataCfg
    from ..data.detaug import DetectionSet
    from ..detection.detect import detect_image, network_classes
    net = _load_for_inference(args, args.cfg, args.weights)
    data = DataCfg(args.data)
    classes = network_classes(net)
    names = _names_for(args.data, classes)
    valid = DetectionSet(data.file("valid", required=True), classes)
    kind = data.get("eval", "voc")
    prefix = args.prefix or ("results/comp4_det_test_" if kind != "coco" else "results/")
    os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
    lines = {j: [] for j in range(classes)}
    coco = []
    from ..train.trainer import progress_bar
    bar = progress_bar(len(valid.paths), "valid")
    for path in valid.paths:
        im, dets = detect_image(net, path, 0.005, 0.5, 0.45)
        h, w = im.shape[1], im.shape[2]
        image_id = os.path.splitext(os.path.basename(path))[0]
        for d in dets:
            x, y, bw, bh = d.bbox.x * w, d.bbox.y * h, d.bbox.w * w, d.bbox.h * h
            xmin, xmax = max(x - bw / 2 + 1, 1), min(x + bw / 2 + 1, w)
            ymin, ymax = max(y - bh / 2 + 1, 1), min(y + bh / 2 + 1, h)
            for j in range(classes):
                if d.prob[j]:
                    lines[j].append(f"{image_id} {d.prob[j]:f} {xmin:f} {ymin:f} {xmax:f} "
                                    f"{ymax:f}\n")
                    coco.append({"image_id": image_id, "category_id": j,
                                 "bbox": [xmin - 1, ymin - 1, xmax - xmin, ymax - ymin],
                                 "score": round(float(d.prob[j]), 5)})
        bar.update(1)
    bar.close()
    if kind == "coco":
        from ..atomic import atomic_write
        out = prefix + "coco_results.json"
        atomic_write(out, [json.dumps(coco).encode()])
        print(f"Wrote {out}")
    else:
        from ..atomic import atomic_write
        for j in range(classes):
            atomic_write(f"{prefix}{names[j]}.txt", [ln.encode() for ln in lines[j]])
        print(f"Wrote {classes} files {prefix}<class>.txt")
    return 0


def cmd_detector_recall(args):
    """pj validate_detector_recall (list from valid=): proposals, IoU and recall per image."""
    from ..data.datacfg import DataCfg
    from ..data.detaug import DetectionSet
    from ..detection.detect import box_iou, detect_image, network_classes, Box
    net = _load_for_inference(args, args.cfg, args.weights)
    data = DataCfg(args.data)
    classes = network_classes(net)
    valid = DetectionSet(data.file("valid", required=True), classes)
    thresh, iou_thresh = 0.001, 0.5
    total = correct = proposals = 0
    avg_iou = 0.0
    for i, path in enumerate(valid.paths):
        _, dets = detect_image(net, path, thresh, 0.5, 0.4)
        proposals += sum(1 for d in dets if d.objectness > thresh)
        for row in valid.boxes[i]:
            total += 1
            truth = Box(*row[1:5])
            ious = (box_iou(d.bbox, truth) for d in dets)
            best = max((v for v in ious if v == v), default=0.0)     # NaN boxes count as 0
            avg_iou += best
            correct += best > iou_thresh
        print(f"{i:5d} {correct:5d} {total:5d}\tRPs/Img: {proposals / (i + 1):.2f}\t"
              f"IOU: {avg_iou * 100 / max(total, 1):.2f}%\t"
              f"Recall:{100.0 * correct / max(total, 1):.2f}%")
    return 0


def cmd_detector_calc_anchors(args):
    from ..detection.anchors import anchors_report, boxes_wh_from_labels, calc_anchors
    from ..data.datacfg import DataCfg, read_lines
    from ..data.labels import label_path_for
    data = DataCfg(args.data)
    classes = data.int("classes", 1)
    paths = read_lines(data.file("train", required=True), "train list")
    wh = boxes_wh_from_labels([label_path_for(p) for p in paths], args.width, args.height,
                              classes)
    if len(wh) < args.num_of_clusters:
        raise DarknetError(f"{len(wh)} boxes in the training labels, fewer than "
                           f"-num_of_clusters {args.num_of_clusters}", args.data)
    anchors, avg_iou = calc_anchors(wh, args.num_of_clusters, seed=0)
    layers = 2 if args.num_of_clusters <= 6 else 3
    if args.cfg:
        from ..cfg.parser import read_cfg
        layers = [s.int_list("mask", []) for s in read_cfg(args.cfg).layers
                  if s.type == "yolo"] or layers
    try:
        print(anchors_report(anchors, layers, classes, avg_iou=avg_iou))
    except ValueError as e:          # e.g. the cfg's masks name more anchors than -num_of_clusters
        raise DarknetError(str(e), args.cfg or args.data) from None
    return 0


def cmd_data_check(args):
    """Pre-flight check of a detection dataset (and its cfg): every problem with file:line."""
    from PIL import Image
    from ..cfg.check import check_cfg
    from ..data.datacfg import DataCfg, read_lines
    from ..data.labels import label_path_for, read_labels
    data = DataCfg(args.data)
    classes = data.int("classes", 1)
    problems = []            # (level, text)
    if args.cfg:
        problems += [(f.level, str(f)) for f in check_cfg(args.cfg, args.data)]
    net_w, net_h = _network_size_of(args.cfg) if args.cfg else (None, None)
    images = 0
    reports = []
    for key in ("train", "valid"):
        if key not in data:
            continue
        lst = data.file(key)
        if not os.path.exists(lst):
            problems.append(("error", f"{data.path}:{data.lines[key]}: error: {key}={data[key]}: "
                                      "no such file"))
            continue
        report = _SplitReport(key, classes, net_w, net_h)
        reports.append(report)
        for n, path in enumerate(read_lines(lst, f"{key} list"), start=1):
            images += 1
            report.images += 1
            try:
                with Image.open(path) as im:
                    im.verify()
            except FileNotFoundError:
                problems.append(("error", f"{lst}:{n}: error: image {path} does not exist"))
                continue
            except Exception as e:
                problems.append(("error", f"{lst}:{n}: error: image {path} is unreadable "
                                          f"({type(e).__name__})"))
                continue
            label = label_path_for(path)
            if not os.path.exists(label):
                problems.append(("error", f"{lst}:{n}: error: no label file for {path} "
                                          f"(looked for {label}; an empty file marks an image "
                                          "without objects)"))
                continue
            rows, label_problems = read_labels(label, classes)
            report.add(rows, label)
            for p in label_problems:
                level = "warning" if getattr(p, "kind", "") == "outside" else "error"
                problems.append((level, str(p).replace(": ", f": {level}: ", 1)
                                 if f": {level}: " not in str(p) else str(p)))
    names = _names_for(args.data, classes) if "names" in data else None
    for report in reports:
        problems += report.warnings()
    for _, text in problems:
        print(text)
    for report in reports:
        print(report.summary(names))
    errors = sum(1 for level, _ in problems if level == "error")
    warnings_ = len(problems) - errors
    print(f"{args.data}: {images} images, {errors} error(s), {warnings_} warning(s)")
    return 1 if errors else 0


def _network_size_of(cfg_path):
    from ..cfg.parser import read_cfg
    try:
        net = read_cfg(cfg_path).net
        return net.int("width", 0) or None, net.int("height", 0) or None
    except DarknetError:            # cfg check reports it
        return None, None


class _SplitReport:
    """What ``data check`` says of a train/valid list: images without objects, objects per
    class, box sizes in network pixels (Darknet drops boxes under 1 pixel when training)."""

    def __init__(self, key, classes, net_w=None, net_h=None):
        self.key, self.classes, self.net_w, self.net_h = key, classes, net_w, net_h
        self.images = self.negatives = self.tiny = 0
        self.first_tiny = None      # the first label file with a box under 1 network pixel
        self.per_class = np.zeros(classes, np.int64)
        self.sizes = []             # (w, h) relative, one row per box

    def add(self, rows, label):
        if not len(rows):
            self.negatives += 1
            return
        ids = rows[:, 0].astype(np.int64)
        np.add.at(self.per_class, ids[(ids >= 0) & (ids < self.classes)], 1)
        self.sizes.append(rows[:, 3:5])
        if self.net_w and self.net_h:
            tiny = int(((rows[:, 3] * self.net_w < 1) | (rows[:, 4] * self.net_h < 1)).sum())
            if tiny and self.first_tiny is None:
                self.first_tiny = label
            self.tiny += tiny

    def warnings(self):
        if not self.tiny:
            return []
        return [("warning", f"{self.first_tiny}: warning: {self.tiny} box(es) of the {self.key} "
                            f"set are under 1 pixel at the network's {self.net_w}x{self.net_h} "
                            "and are dropped in training; raise width/height or remove them")]

    def summary(self, names):
        wh = np.concatenate(self.sizes) if self.sizes else np.zeros((0, 2), np.float32)
        counts = ", ".join(f"{names[j] if names else j} {int(c)}"
                           for j, c in enumerate(self.per_class))
        line = (f"{self.key}: {self.images} images ({self.negatives} without objects), "
                f"{len(wh)} objects: {counts}")
        if len(wh) and self.net_w and self.net_h:
            px = wh * np.array([self.net_w, self.net_h], np.float32)
            med, low = np.median(px, axis=0), px[np.argmin(px.prod(axis=1))]
            line += (f"\n  boxes at the network's {self.net_w}x{self.net_h}: median "
                     f"{med[0]:.0f}x{med[1]:.0f} px, smallest {low[0]:.1f}x{low[1]:.1f} px, "
                     f"{int(((px[:, 0] < 16) | (px[:, 1] < 16)).sum())} under 16 px")
        return line


def cmd_data_shapes(args):
    from ..data.shapes import run_shapes
    return run_shapes(args)


def cmd_classifier_train(args):
    return _train(args, args.cfg, args.data, args.weights)


def _load_for_inference(args, cfg, weights):
    from ..nn.network import Network
    net = Network.from_cfg(cfg, batch=1, device=_device(args), device_index=args.gpu_index)
    net.load_weights(weights)
    if getattr(args, "letter_box", False):   # AB's -letter_box: letterbox whatever the cfg says
        net.options.data["letter_box"] = 1
    return net


def cmd_classifier_valid(args):
    from ..data.datacfg import DataCfg
    from ..data.datasets import load_classification
    from ..train.trainer import evaluate
    data = DataCfg(args.data)
    classes = data.int("classes", 2)
    top = args.t or max(1, data.int("top", 1))
    net = _load_for_inference(args, args.cfg, args.weights)
    dataset = load_classification(data, "valid", classes)
    top1, topk = evaluate(net, dataset, top, progress=True)
    print(f"{len(dataset)}: top 1: {top1:f}, top {top}: {topk:f}")
    return 0


def _predict(net, names, paths, top):
    import time
    from ..nn.backend import to_numpy
    from ..data.datasets import load_image
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
    from ..data.datacfg import DataCfg, class_names
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
    from ..cfg.edit import CfgDocument
    from ..nn.network import Network
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
    from ..nn.network import Network
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    net.load_weights(args.weights, partial=True)
    net.seen = 0
    net.save_weights(args.out, cutoff=args.n)
    print(f"Saved the first {min(args.n, len(net.layers))} layers of {args.weights} to {args.out}")
    return 0


def cmd_reset(args):
    """The same weights with seen = 0 (training schedules start over)."""
    from ..nn.network import Network
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    net.load_weights(args.weights)
    net.seen = 0
    net.save_weights(args.out)
    print(f"Saved {args.out} with seen = 0")
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
    import platform
    import PIL
    from .. import __version__
    print(f"darknet_py {__version__}")
    print(f"Python {platform.python_version()}, NumPy {np.__version__}, Pillow {PIL.__version__}")
    for line in _gpu_report():
        print(line)
    return 0


def _ops(net):
    """pj numops: 2*n*size*size*(c/groups)*out_h*out_w per conv, 2*inputs*outputs per connected."""
    return sum(round(layer.bflops() * 1e9) for layer in net.layers)


def cmd_ops(args):
    """pj ``ops CFG``: the floating point operations of one forward pass (batch 1)."""
    from ..nn.network import Network
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    ops = _ops(net)
    print(f"Floating Point Operations: {ops}")
    print(f"Floating Point Operations: {ops / 1e9:.2f} Bn")
    return 0


def cmd_speed(args):
    """pj ``speed CFG [TICS]``: TICS forward passes of a blank image at batch 1, timed."""
    import time
    from ..nn.backend import on_gpu
    from ..nn.network import Network
    net = Network.from_cfg(args.cfg, batch=1, device=_device(args), device_index=args.gpu_index,
                           seed=0)
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


def cmd_rgbgr(args):
    """pj ``rgbgr CFG WEIGHTS OUT``: swap the R and B input channels of the first conv layer's
    filters (an RGB model becomes a BGR one and back)."""
    from ..nn.network import Network
    net = Network.from_cfg(args.cfg, batch=1, seed=0)
    net.load_weights(args.weights)
    conv = next((layer for layer in net.layers if layer.type == "convolutional"), None)
    if conv is None:
        raise DarknetError("rgbgr: the cfg has no [convolutional] layer", args.cfg)
    if conv.weights.shape[1] != 3:
        raise DarknetError(f"rgbgr: the first [convolutional] sees {conv.weights.shape[1]} "
                           "channels per group, not 3 (Darknet leaves it as it is)",
                           args.cfg, conv.line)
    conv.weights[:, [0, 2]] = conv.weights[:, [2, 0]]
    net.save_weights(args.out)
    print(f"Saved {args.out} with layer {conv.index}'s R and B input channels swapped")
    return 0


def cmd_data_mnist(args):
    from ..data.mnist import download_mnist
    download_mnist(args.dir)
    print(f"MNIST is in {args.dir}; point a .data file's train= and valid= at "
          f"{os.path.join(args.dir, 'train-images-idx3-ubyte.gz')} and "
          f"{os.path.join(args.dir, 't10k-images-idx3-ubyte.gz')}")
    return 0


def _at_least(minimum):
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


def _device_flags(p):
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                   help="where to compute (auto: the GPU when CuPy finds one)")
    p.add_argument("-i", "--gpu-index", type=_at_least(0), default=0, metavar="N",
                   help="which GPU (Darknet's -i)")
    p.add_argument("-nogpu", "--nogpu", action="store_true", help="use the CPU (Darknet's -nogpu)")


def _train_flags(p):
    _device_flags(p)
    p.add_argument("--max-batches", type=_at_least(1), metavar="N",
                   help="stop after N iterations (default: max_batches from the cfg)")
    p.add_argument("-clear", "--clear", action="store_true",
                   help="reset the seen-images counter of the loaded weights")
    p.add_argument("--resume", action="store_true",
                   help="continue from backup/<cfg>_last.weights with the same schedule")
    p.add_argument("--seed", type=int, help="seed for initialisation, data order and dropout")
    p.add_argument("--backup-every", type=_at_least(1), default=100, metavar="N",
                   help="write backup/<cfg>_last.weights every N iterations (default 100)")
    p.add_argument("--darknet-lines", action="store_true",
                   help="print Darknet's per-iteration lines instead of a progress bar")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-gpus", "--gpus", metavar="0,1,...",
                   help="data-parallel training, one process per GPU (NCCL); the learning rate "
                        "is not multiplied, the effective batch is batch x GPUs")
    p.add_argument("-map", "--map", action="store_true",
                   help="detectors: mAP@0.5 on valid= every 4 epochs (at least 100 iterations) "
                        "and at the end; the best goes to _best.weights and the chart")
    p.add_argument("-mAP_epochs", "--map-epochs", dest="map_epochs", type=_at_least(1),
                   default=4, metavar="N", help="with -map: every N epochs (default 4)")
    p.add_argument("-saveweights", "--save-weights-every", dest="saveweights",
                   type=_at_least(1), metavar="N",
                   help="write backup/<cfg>_N.weights every N iterations (default: saveweights= "
                        "of the .data file, else 1000, or 10000 when max_batches >= 10000)")
    p.add_argument("-chart", "--chart", metavar="PATH", help="where to draw the chart "
                   "(default backup/chart.png)")
    p.add_argument("-show_imgs", "--show-imgs", dest="show_imgs", action="store_true",
                   help="detectors: save the first mini-batch as trained on, with its truth "
                        "boxes (backup/aug_*.jpg), to check the labels")
    p.add_argument("--loader-processes", type=_at_least(0), default=0, metavar="N",
                   help="detectors: prepare the images in N worker processes instead of "
                        "threads (for machines with many cores; the batches are the same)")
    _dont_show(p)


def _dont_show(p):
    p.add_argument("-dont_show", "--dont-show", dest="dont_show", action="store_true",
                   help="accepted for AlexeyAB's command lines: darknet_py never opens a window")


def _letter_box(p):
    p.add_argument("-letter_box", "--letter-box", dest="letter_box", action="store_true",
                   help="letterbox the images (keep the aspect ratio) even where the cfg says "
                        "letter_box=0")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="darknet_py",
        description="Darknet's cfg-driven neural networks in Python.")
    from .. import __version__
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
    check = cfg_commands.add_parser(
        "check", help="report every problem in a cfg (and .data/.names) at once, with fixes")
    check.add_argument("cfg", help="a Darknet .cfg file")
    check.add_argument("data", nargs="?", help="a .data file: its classes and names are "
                       "checked against the cfg")
    check.add_argument("--strict", action="store_true",
                       help="warnings count as errors (exit status 1)")
    check.set_defaults(func=cmd_cfg_check)
    new = cfg_commands.add_parser(
        "new", help="a ready-to-train cfg from a template: classes, filters, max_batches, steps")
    new.add_argument("--from", dest="template", required=True, metavar="TEMPLATE",
                     help="yolov3-tiny, yolov2-tiny, mnist, or a path to a .cfg")
    new.add_argument("--classes", type=int, required=True, metavar="N")
    new.add_argument("--size", metavar="WxH",
                     help="network width x height (multiples of 32 for yolo/region)")
    new.add_argument("--anchors", metavar="DATA|W,H,...",
                     help="a .data file (k-means anchors from its training boxes) or anchor "
                          "sizes in network pixels")
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

    detector = commands.add_parser("detector", help="Darknet's detector commands")
    dsub_ = detector.add_subparsers(dest="detector_command", metavar="SUBCOMMAND")
    dsub_.required = True
    dtrain = dsub_.add_parser("train", help="detector train DATA CFG [WEIGHTS]")
    dtrain.add_argument("data")
    dtrain.add_argument("cfg")
    dtrain.add_argument("weights", nargs="?")
    _train_flags(dtrain)
    dtrain.set_defaults(func=cmd_detector_train)
    dtest = dsub_.add_parser("test", help="detector test DATA CFG WEIGHTS [IMAGE|DIR|LIST...]")
    dtest.add_argument("data")
    dtest.add_argument("cfg")
    dtest.add_argument("weights")
    dtest.add_argument("images", nargs="*", help="images, folders or .txt lists (none: stdin)")
    detect = commands.add_parser("detect", help="detect CFG WEIGHTS IMAGE...: detector test "
                                                "without a .data file")
    detect.add_argument("cfg")
    detect.add_argument("weights")
    detect.add_argument("images", nargs="+")
    detect.add_argument("--names", help="a .names file (default: class numbers)")
    for p in (dtest, detect):
        p.add_argument("-thresh", "--thresh", type=float, default=0.25)
        p.add_argument("-nms", "--nms", type=float, default=0.45)
        p.add_argument("-ext_output", "--ext-output", dest="ext_output", action="store_true",
                       help="also print each box in pixels")
        p.add_argument("-out", "--out", help="write the detections as JSON to this file")
        p.add_argument("--out-dir", help="folder for the drawn pictures (default: here)")
        p.add_argument("-save_labels", "--save-labels", dest="save_labels", action="store_true",
                       help="write YOLO label files next to the images")
        _device_flags(p)
        _dont_show(p)
        _letter_box(p)
    dtest.set_defaults(func=cmd_detector_test)
    detect.set_defaults(func=cmd_detect)
    dmap = dsub_.add_parser("map", help="detector map DATA CFG WEIGHTS: AP per class and mAP")
    dmap.add_argument("data")
    dmap.add_argument("cfg")
    dmap.add_argument("weights")
    dmap.add_argument("-thresh", "--thresh", type=float, default=0.25,
                      help="confidence for precision/recall/F1 (default .25)")
    dmap.add_argument("-iou_thresh", "--iou-thresh", dest="iou_thresh", type=float,
                      default=0.5)
    dmap.add_argument("-points", "--points", type=int, default=0,
                      help="0: area under the curve (default); 11: VOC2007's 11 points")
    _device_flags(dmap)
    _dont_show(dmap)
    _letter_box(dmap)
    dmap.set_defaults(func=cmd_detector_map)
    dvalid = dsub_.add_parser("valid", help="detector valid DATA CFG WEIGHTS: result files "
                              "(eval=voc per-class .txt, eval=coco JSON) for external scoring")
    drecall = dsub_.add_parser("recall", help="detector recall DATA CFG WEIGHTS: recall and IoU "
                               "per image")
    for p in (dvalid, drecall):
        p.add_argument("data")
        p.add_argument("cfg")
        p.add_argument("weights")
        _device_flags(p)
        _letter_box(p)
    dvalid.add_argument("-prefix", "--prefix", help="output path prefix (default "
                        "results/comp4_det_test_)")
    dvalid.set_defaults(func=cmd_detector_valid)
    drecall.set_defaults(func=cmd_detector_recall)
    danchors = dsub_.add_parser("calc_anchors", help="detector calc_anchors DATA "
                                "-num_of_clusters K -width W -height H")
    danchors.add_argument("data")
    danchors.add_argument("-num_of_clusters", "--num-of-clusters", dest="num_of_clusters",
                          type=_at_least(1), default=6)
    danchors.add_argument("-width", "--width", type=_at_least(1), default=416)
    danchors.add_argument("-height", "--height", type=_at_least(1), default=416)
    danchors.add_argument("--cfg", help="take the yolo masks from this cfg")
    _dont_show(danchors)
    danchors.set_defaults(func=cmd_detector_calc_anchors)

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

    rgbgr = commands.add_parser("rgbgr", help="rgbgr CFG WEIGHTS OUT: swap the first conv "
                                "layer's R and B input channels")
    for name in ("cfg", "weights", "out"):
        rgbgr.add_argument(name)
    rgbgr.set_defaults(func=cmd_rgbgr)
    ops = commands.add_parser("ops", help="ops CFG: floating point operations per image")
    ops.add_argument("cfg")
    ops.set_defaults(func=cmd_ops)
    speed = commands.add_parser("speed", help="speed CFG [TICS]: time TICS forward passes")
    speed.add_argument("cfg")
    speed.add_argument("tics", nargs="?", type=_at_least(1), default=1000)
    _device_flags(speed)
    speed.set_defaults(func=cmd_speed)
    version = commands.add_parser("version", help="the version, and the CUDA, cuDNN and GPUs "
                                  "darknet_py finds")
    version.set_defaults(func=cmd_version)

    data = commands.add_parser("data", help="datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    mnist = dsub.add_parser("mnist", help="download the full MNIST (70,000 digits) into DIR")
    mnist.add_argument("dir")
    mnist.set_defaults(func=cmd_data_mnist)
    from ..data.shapes import add_shapes_arguments
    dcheck = dsub.add_parser("check", help="data check DATA [CFG]: images, labels, classes")
    dcheck.add_argument("data")
    dcheck.add_argument("cfg", nargs="?")
    dcheck.set_defaults(func=cmd_data_check)
    shapes = dsub.add_parser("shapes", help="generate the coloured-shapes detection dataset")
    add_shapes_arguments(shapes)      # OUT --n --size --seed --valid-fraction --format ...
    shapes.set_defaults(func=cmd_data_shapes)
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
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
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


if __name__ == "__main__":
    sys.exit(main())
