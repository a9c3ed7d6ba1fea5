"""The backup folder's files: their names, and the checkpoint beside ``<cfg>_last.weights``
(``<cfg>_last.state.npz`` and the log).

The .weights file holds each layer's weights record; the state file holds every layer's whole
``state()`` -- the weights again, the update buffers with their momentum, Adam's moments --
keyed ``"<layer index>/<name>"``, and ``meta`` (JSON: seen, t, seed, avg_loss, best, accuracy,
``whole``).  The state file is written first and is complete on its own: a kill between the two
writes leaves it one checkpoint ahead of ``_last.weights``, and --resume then takes the
weights from it, so a resumed run ends exactly as an uninterrupted one whenever it was killed.
A state file without the weights (older versions) belongs to the weights file of the same
``seen`` only.
"""

import contextlib
import io
import json
import os
import sys
import tempfile
import zipfile

import numpy as np

from ..atomic import atomic_write
from ..errors import DarknetError
from ..nn.backend import host_copies
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


def state_snapshot(net, meta):
    """What the state file of ``net`` holds -- everything --resume needs, the weights
    included -- copied to the host as it is now: (meta as JSON, {key: array}), for
    ``write_state`` (which may run while training goes on)."""
    items = [(f"{layer.index}/{name}", array) for layer in net.layers
             for name, array in layer.state().items()]
    arrays = dict(zip([key for key, _ in items], host_copies([a for _, a in items])))
    return json.dumps(dict(seen=net.seen, t=net.t, whole=True, **meta)), arrays


def write_state(path, meta_json, arrays):
    """The state file, atomically (before ``_last.weights``: see the module's docstring)."""
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(meta_json), **arrays)
    atomic_write(path, [buf.getvalue()])


def write_backup(state_path, state, files):
    """The backup thread's work: the state file first (the module's docstring says why), then the
    weights files, each atomically."""
    if state_path is not None:
        write_state(state_path, *state)
    for path, chunks in files:
        atomic_write(path, chunks)


class BackgroundWriter:
    """Writes the backup folder's files in a thread of its own, one after the other in the
    order asked, so that the GPU does not wait for the disk (each file is fsync'ed) or for the
    chart's drawing.  Callers hand it host copies (``state_snapshot``,
    ``Network.weights_chunks``), so training may change its arrays meanwhile.  ``wait()``
    returns when everything asked is on disk and raises, in the training's thread, the first
    error a write met (a full disk stops the run as a write in that thread would)."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="darknet_py-backup")
        self._pending = []
        self._failed = False    # after a failed write nothing more is written (as if killed)

    def submit(self, fn, *args):
        """Run ``fn(*args)`` after the writes asked before; an earlier write's error is
        raised here."""
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            future.result()
        self._pending.append(self._pool.submit(self._run, fn, args))

    def _run(self, fn, args):
        if self._failed:
            return
        try:
            fn(*args)
        except BaseException:
            self._failed = True
            raise

    def wait(self):
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self):
        """Wait for every write, then end the thread."""
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def read_state(path):
    """(meta, {key: array}) of a state file; a file that cannot be read whole (empty, cut by a
    full disk, not a state file) is a one-line error saying what to do."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":            # numpy would read another file as a pickle
            raise ValueError("an empty file" if not magic else
                             "not a .npz archive, as darknet_py writes its state files")
        with np.load(path, allow_pickle=False) as saved:
            arrays = {key: saved[key] for key in saved.files}
        meta = json.loads(str(arrays.pop("meta")))
        meta["seen"], meta["t"]
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DarknetError(f"--resume: the state file is broken ({reason}): remove it to resume "
                           "from the weights alone (momentum then starts from zero), or train "
                           "again without --resume", path) from None
    return meta, arrays


def restore_state(net, path):
    """Copy the state file's arrays into ``net``'s layers and set ``net.t`` when the file
    belongs to ``net``'s weights (the same ``seen``).  Returns (meta, the keys the file lacks,
    e.g. Adam's moments in a file written without them), or (None, []) when there is no such
    file."""
    if not os.path.exists(path):
        return None, []
    meta, saved = read_state(path)
    ahead = meta.get("whole", False) and meta["seen"] > net.seen
    if meta["seen"] != net.seen and not ahead:
        return None, []
    if ahead:           # killed between the state file and the weights: the state is whole
        print(f"{path}: note: one checkpoint ahead of the weights file (a run stopped between "
              "the two writes); resuming from it", file=sys.stderr)
        net.seen = meta["seen"]
    missing = []
    for layer in net.layers:
        arrays = layer.state() if ahead else beyond_weights(layer)
        for name, array in arrays.items():
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


def read_log(path, iteration, say=True):
    """The JSON-lines log up to ``iteration``: (its lines, to write back once the resumed run
    starts; their (iteration, loss, avg_loss) records).  A last line cut by a crash while it
    was written is dropped (``say``: with a note); a broken line before it is an error."""
    if not os.path.exists(path):
        return [], []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or "not a UTF-8 text file"
        raise DarknetError(f"--resume: cannot read the training log: {reason}", path) from None
    kept, records = [], []
    for lineno, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            done = record["iteration"] <= iteration
        except (ValueError, KeyError, TypeError):
            if lineno == len(lines):
                if say:
                    print(f"{path}:{lineno}: note: the last line was cut (a crash while it was "
                          "written); dropping it", file=sys.stderr)
                break
            raise DarknetError("not a log record (a JSON object with an iteration): remove "
                               "this line, or the whole log, to resume", path, lineno) from None
        if done:
            kept.append(line if line.endswith("\n") else line + "\n")
            records.append(record)
    return kept, [(r["iteration"], r["loss"], r["avg_loss"]) for r in records
                  if "loss" in r]      # not the --profile record


def remove_cut_writes(folder, base):
    """Remove the temporary files of writes that a kill cut short (atomic.atomic_open's
    ``.<name>.<random><suffix>`` beside ``<base>_*``, ``<base>.log.jsonl``, ``chart_<base>.png``):
    never read, they would only pile up.  Called with the backup lock held, so no running
    training of ``base`` is writing them."""
    prefixes = (f".{base}_", f".{base}.log.jsonl.", f".chart_{base}.png.")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(prefixes):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))


def saved_iteration(weights_path, images_per_iteration):
    """The iteration a .weights file was saved at, or "none yet"."""
    try:
        header, _ = read_weights_file(weights_path)
    except DarknetError:
        return "none yet"
    return header.seen // images_per_iteration


class BackupLock:
    """``<backup>/<cfg>.lock``, holding the PID of the training that writes ``<cfg>_*`` files
    there: a second training of the same cfg into the same folder would silently replace the
    first one's weights, state and log.  A lock whose process is gone (kill -9, a crash) is
    taken over with a note."""

    def __init__(self, folder, base):
        self.path = os.path.join(folder, f"{base}.lock")
        self.base = base
        self.held = False

    def acquire(self):
        for _ in range(3):
            if self._create():
                self.held = True
                return
            pid = _lock_owner(self.path)
            if pid is not None and _running(pid):
                raise self._busy(pid)
            if self._remove_stale(pid):
                print(f"{self.path}: note: taking over the lock of a training that is no "
                      f"longer running (PID {pid if pid is not None else 'unreadable'})",
                      file=sys.stderr)
        raise DarknetError("cannot take the lock: other trainings keep taking it", self.path)

    def release(self):
        if self.held:
            self.held = False
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def _create(self):
        """Create the lock with our PID in it, in one step (a hard link of a written file), so
        no other process ever reads it empty; False when it exists."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.base}.lock.", dir=os.path.dirname(self.path))
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def _remove_stale(self, pid):
        """Move the stale lock aside (a rename: one process wins); when what was moved is a
        fresh lock that another process created meanwhile, put it back and refuse."""
        grave = f"{self.path}.{os.getpid()}.stale"
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:      # another process removed it first
            return False
        moved = _lock_owner(grave)
        if moved != pid and moved is not None and _running(moved):
            with contextlib.suppress(OSError):
                os.link(grave, self.path)
            os.unlink(grave)
            raise self._busy(moved)
        os.unlink(grave)
        return True

    def _busy(self, pid):
        return DarknetError(f"another training (PID {pid}) is writing {self.base}'s files into "
                            "this backup folder: wait for it to end, or give this run another "
                            "backup= in the .data file", self.path)


def _lock_owner(path):
    """The PID in a lock file, or None when it is unreadable (then it is stale)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _running(pid):
    # our own PID in a lock we do not hold is a dead process's (PIDs restart in a container)
    if pid == os.getpid() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # another user's process
        return True
    except OSError:
        return False
    return True
