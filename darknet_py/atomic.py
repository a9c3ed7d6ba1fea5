"""Files are replaced whole or not at all: a temporary file beside the target, then a rename.

Used for every file darknet_py writes that a user would hate to find half-written: weights,
checkpoints, charts, cfgs, datasets, pictures.
"""

import contextlib
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, suffix=".tmp"):
    """A binary file to write; on success it replaces ``path`` (through a symlink, keeping an
    existing file's permissions), on any error it disappears and ``path`` is untouched."""
    target = os.path.realpath(os.fspath(path))
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=suffix,
                                   dir=folder)
    except OSError as e:        # name what the user asked for, not the temporary file
        why = f"the folder {folder} does not exist" if not os.path.isdir(folder) else e.strerror
        raise type(e)(e.errno, f"cannot write it: {why}", os.fspath(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path, chunks):
    """Write byte chunks (any iterable) to ``path`` atomically."""
    with atomic_open(path) as f:
        for chunk in chunks:
            f.write(chunk)
