"""A detector run over a labelled image list (a :class:`darknet_py.data.detaug.DetectionSet`):
the detections and truths that mAP is computed from (AlexeyAB's validate_detector_map), the
result files of pj validate_detector and the running recall of pj validate_detector_recall
(pj:examples/detector.c).

``progress``, where taken, is a callable told the number of images done after each step
(e.g. a tqdm bar's ``update``); the callers own the display.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from ..box import Box, box_iou
from ..image import fit_image, load_image_color
from .detect import (detect_image, network_boxes_for_nms, network_nms, network_size,
                     uses_letterbox)


def detections_for_map(net, dataset, thresh=0.005, nms=0.45, batch=16, progress=None):
    """Per image of ``dataset``: the (class, prob, x, y, w, h) detections above ``thresh``
    (image-relative boxes) and the (class, x, y, w, h) truths, as AB's validate_detector_map.

    The images go through the network ``batch`` at a time, and only the boxes above ``thresh``
    leave its device (network_boxes_for_nms).  The next batch is read and letterboxed on a
    thread of its own while the network runs: not on the training loader's threads or
    processes, so that training's batches keep being prepared while ``-map`` runs."""
    net_w, net_h = network_size(net)
    letterboxed = uses_letterbox(net.options)

    def read(start):
        idx = range(start, min(start + batch, len(dataset)))
        images = [load_image_color(dataset.paths[i]) for i in idx]
        x = np.stack([fit_image(im, net_w, net_h, letterboxed) for im in images])
        return idx, [(im.shape[2], im.shape[1]) for im in images], x

    detections, truths = [], []
    starts = range(0, len(dataset), batch)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="darknet_py-map") as reader:
        coming = reader.submit(read, starts[0]) if starts else None
        for j in range(len(starts)):
            idx, sizes, x = coming.result()
            if j + 1 < len(starts):
                coming = reader.submit(read, starts[j + 1])
            net.forward(x, train=False)
            for i, dets in zip(idx, network_boxes_for_nms(net, sizes, thresh)):
                network_nms(net, dets, nms)
                detections.append([(c, d.prob[c], d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h)
                                   for d in dets for c in range(dataset.classes)
                                   if d.prob[c] > thresh])
                truths.append([(int(r[0]), r[1], r[2], r[3], r[4]) for r in dataset.boxes[i]])
            if progress is not None:
                progress(len(idx))
    return detections, truths


def validation_results(net, dataset, classes, progress=None, map=None):
    """pj validate_detector (thresh .005, nms .45; ``map``: the .data file's ``map=``, which
    only a tree= [region] reads) over ``dataset``: ``(lines, coco)``.

    ``lines[j]``: class j's VOC result lines ``image_id prob xmin ymin xmax ymax``, the box in
    1-based pixels clipped to the image (pj print_detector_detections); ``coco``: the same
    detections as COCO records, the box 0-based ``[x, y, w, h]`` as pj print_cocos, but the
    image id the file name without its extension and the category id the class index."""
    lines = {j: [] for j in range(classes)}
    coco = []
    for path in dataset.paths:
        im, dets = detect_image(net, path, 0.005, 0.5, 0.45, map=map)
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
        if progress is not None:
            progress(1)
    return lines, coco


class Recall(NamedTuple):
    """The running totals of pj validate_detector_recall after ``image`` (0-based)."""
    image: int
    correct: int        # truths whose best detection overlaps them by more than iou_thresh
    total: int          # truths so far
    proposals: int      # detections with objectness above thresh
    iou_sum: float      # the best IoU of each truth, summed


def recall_per_image(net, dataset, thresh=0.001, iou_thresh=0.5):
    """pj validate_detector_recall (nms .4): yields a :class:`Recall` after each image."""
    total = correct = proposals = 0
    iou_sum = 0.0
    for i, path in enumerate(dataset.paths):
        _, dets = detect_image(net, path, thresh, 0.5, 0.4)
        proposals += sum(1 for d in dets if d.objectness > thresh)
        for row in dataset.boxes[i]:
            total += 1
            truth = Box(*row[1:5])
            ious = (float(box_iou(d.bbox, truth)) for d in dets)
            best = max((v for v in ious if v == v), default=0.0)     # NaN boxes count as 0
            iou_sum += best
            correct += best > iou_thresh
        yield Recall(i, correct, total, proposals, iou_sum)
