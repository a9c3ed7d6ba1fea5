"""The backup folder's files: their names, and the checkpoint beside ``<cfg>_last.weights``
(``<cfg>_last.state.npz`` and the log).

The .weights file holds each layer's weights record; the state file holds the rest of every
layer's ``state()`` (update buffers with their momentum, Adam's moments), keyed
``"<layer index>/<name>"``, and ``meta`` (JSON: seen, t, seed, avg_loss, best, accuracy).  It
belongs to the weights file with the same ``seen``; together they make --resume exact.
"""

import io
import json
import os

import numpy as np

from ..atomic import atomic_write
from ..errors import DarknetError
from ..nn.backend import to_numpy
from ..nn.weights import read_weights_file


def basecfg(path):
    """Darknet's basecfg: the file name without folders, cut at its first dot
    (``cfg/yolov3.tiny.cfg`` -> ``yolov3``); backup files are named after it."""
    name = os.path.basename(path)
    return name.split(".", 1)[0] or name


def snapshot_every(max_batches, data):
    """AlexeyAB's numbered snapshots ``<cfg>_N.weights``: every ``saveweights=`` iterations
    of the .data file, else every 1000 when max_batches < 10000 and every 10000 above."""
    return data.int("saveweights", 1000 if max_batches < 10000 else 10000)


def beyond_weights(layer):
    """The part of ``layer.state()`` a .weights file does not hold."""
    stored = layer.weight_record()
    return {name: array for name, array in layer.state().items() if name not in stored}


def save_state(net, path, meta):
    """Write the state file of ``net`` (its weights are saved apart), atomically."""
    arrays = {f"{layer.index}/{name}": to_numpy(array) for layer in net.layers
              for name, array in beyond_weights(layer).items()}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(dict(seen=net.seen, t=net.t, **meta))), **arrays)
    atomic_write(path, [buf.getvalue()])


def restore_state(net, path):
    """Copy the state file's arrays into ``net``'s layers and set ``net.t`` when the file
    belongs to ``net``'s weights (the same ``seen``).  Returns (meta, the keys the file lacks,
    e.g. Adam's moments in a file written without them), or (None, []) when there is no such
    file."""
    if not os.path.exists(path):
        return None, []
    with np.load(path, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
        if meta["seen"] != net.seen:
            return None, []
        missing = []
        for layer in net.layers:
            for name, array in beyond_weights(layer).items():
                key = f"{layer.index}/{name}"
                if key not in saved:
                    missing.append(key)
                    continue
                if saved[key].shape != array.shape:
                    raise DarknetError(f"--resume: {key} has shape {saved[key].shape} there but "
                                       f"{array.shape} in the network: the state file belongs "
                                       "to another cfg (remove it to resume without it)", path)
                array[...] = net.xp.asarray(saved[key])
    net.t = meta["t"]
    return meta, missing


def truncate_log(path, iteration, write=True):
    """The (iteration, loss, avg_loss) records of the JSON-lines log up to ``iteration``; the
    file is cut there too (``write``: rank 0 only)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        kept = [line for line in f if json.loads(line)["iteration"] <= iteration]
    if write:
        atomic_write(path, [line.encode() for line in kept])
    return [(rec["iteration"], rec["loss"], rec["avg_loss"]) for rec in map(json.loads, kept)
            if "loss" in rec]      # not the --profile record


def saved_iteration(weights_path, images_per_iteration):
    """The iteration a .weights file was saved at, or "none yet"."""
    try:
        header, _ = read_weights_file(weights_path)
    except DarknetError:
        return "none yet"
    return header.seen // images_per_iteration
