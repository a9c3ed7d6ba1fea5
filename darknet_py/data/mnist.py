"""Download the full MNIST (60,000 + 10,000 digits) and check it against the published checksums.

    from darknet_py.data.mnist import download_mnist
    download_mnist("data/mnist-full")          # or: python -m darknet_py.data.mnist data/mnist-full

Mirrors are tried in order (PyTorch's S3 copy, TensorFlow's Google Cloud copy, then Yann LeCun's
site).  Each file must match its size, MD5 (as published by torchvision) and SHA-256 (as published
by TensorFlow Datasets) before it is renamed into place, so a bad or partial download never
appears under the final name.  Files already present with the right checksums are not fetched
again.  Without a network the error says so in one line and points at the embedded
10,000-digit sample in data/mnist/, which needs no download.
"""

import hashlib
import http.client
import os
import socket
import sys
import urllib.error
import urllib.request

from ..atomic import atomic_open
from ..errors import DarknetError

DEFAULT_BASE_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# name: size in bytes, MD5 (torchvision.datasets.MNIST.resources), SHA-256 (TFDS checksums).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": {
        "size": 9912422,
        "md5": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "sha256": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    },
    "train-labels-idx1-ubyte.gz": {
        "size": 28881,
        "md5": "d53e105ee54ea40749a09fcbcd1e9432",
        "sha256": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    },
    "t10k-images-idx3-ubyte.gz": {
        "size": 1648877,
        "md5": "9fb629c4189551a2d022fa330f9573f3",
        "sha256": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    },
    "t10k-labels-idx1-ubyte.gz": {
        "size": 4542,
        "md5": "ec29112dd5afa0611ce80d1b7f02629c",
        "sha256": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
}

SAMPLE_HINT = "the embedded 10,000-digit sample is in data/mnist/ (data/mnist.data)"
_CHUNK = 1 << 16
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                   TimeoutError, socket.timeout, OSError)


class _Failure(Exception):
    def __init__(self, reason, network):
        super().__init__(reason)
        self.reason, self.network = reason, network


def _check(size, md5, sha256, expected):
    """None when the file's size and hashes match ``expected``, else why not."""
    if "size" in expected and size != expected["size"]:
        return f"size {size} bytes, expected {expected['size']}"
    if "md5" in expected and md5 != expected["md5"]:
        return f"MD5 {md5}, expected {expected['md5']}"
    if "sha256" in expected and sha256 != expected["sha256"]:
        return f"SHA-256 {sha256}, expected {expected['sha256']}"
    return None


def _file_ok(path, expected):
    if not os.path.isfile(path):
        return False
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return _check(size, md5.hexdigest(), sha.hexdigest(), expected) is None


def _fetch(url, dest, expected, progress, timeout):
    """Download ``url`` to ``dest`` through a temporary file; raise _Failure on any problem."""
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "darknet_py (urllib)"})
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = 0
    with atomic_open(dest, ".part") as out:
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            raise _Failure(f"HTTP {e.code} {e.reason}", network=False) from None
        except urllib.error.URLError as e:
            raise _Failure(str(getattr(e, "reason", e)), network=True) from None
        except _NETWORK_ERRORS as e:
            raise _Failure(f"{type(e).__name__}: {e}", network=True) from None
        with resp:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else expected.get("size")
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=os.path.basename(dest), disable=not progress,
                      file=sys.stderr, leave=False) as bar:
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except _NETWORK_ERRORS as e:
                        raise _Failure(f"connection lost after {size} bytes: "
                                       f"{type(e).__name__}: {e}", network=True) from None
                    if not chunk:
                        break
                    out.write(chunk)  # an OSError here is local (disk full), not the network
                    md5.update(chunk)
                    sha.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        bad = _check(size, md5.hexdigest(), sha.hexdigest(), expected)
        if bad:            # raised inside the block: the partial file is removed
            raise _Failure(f"checksum mismatch: {bad}", network=False)


def download_mnist(dest_dir, base_urls=None, progress=True, *, timeout=30, files=None):
    """Fetch the four MNIST ``.gz`` IDX files into ``dest_dir``; returns ``{name: path}``.

    ``base_urls`` (default :data:`DEFAULT_BASE_URLS`) are tried in order for each file; the first
    copy whose size and checksums match wins.  ``files`` maps file names to the expected
    ``{"size", "md5", "sha256"}`` (any subset; default :data:`MNIST_FILES`).  When every mirror
    fails a :class:`DarknetError` names the file and each mirror's reason; when every failure was a
    network error (offline) the message starts ``cannot download MNIST (no network?)``.
    """
    dest_dir = os.fspath(dest_dir)
    if base_urls is None:
        bases = list(DEFAULT_BASE_URLS)
    elif isinstance(base_urls, str):
        bases = [base_urls]
    else:
        bases = list(base_urls)
    if not bases:
        raise DarknetError("no MNIST mirror to download from", dest_dir)
    files = MNIST_FILES if files is None else files
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as e:
        raise DarknetError(f"cannot create download folder: {e.strerror or e}", dest_dir) from None

    paths = {}
    for name, expected in files.items():
        dest = os.path.join(dest_dir, name)
        paths[name] = dest
        if _file_ok(dest, expected):
            continue
        failures = []
        for base in bases:
            url = base if base.endswith("/") else base + "/"
            url += name
            try:
                _fetch(url, dest, expected, progress, timeout)
                break
            except _Failure as f:
                failures.append((url, f))
            except OSError as e:  # local problems: disk full, permissions
                raise DarknetError(f"cannot write {name}: {e.strerror or e}", dest) from None
        else:
            if all(f.network for _, f in failures):
                url, f = failures[0]
                msg = f"cannot download MNIST (no network?): {url}: {f.reason}"
                if len(failures) > 1:
                    msg += f" (and {len(failures) - 1} other mirror{'s' if len(failures) > 2 else ''})"
            else:
                msg = "cannot download MNIST: " + "; ".join(f"{u}: {f.reason}" for u, f in failures)
            raise DarknetError(f"{msg}; {SAMPLE_HINT}", dest)
    return paths


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="Download and verify the full MNIST data set.")
    ap.add_argument("dest_dir", help="folder for the four .gz IDX files")
    ap.add_argument("--mirror", action="append", help="base URL to try (repeatable; default: "
                    + ", ".join(DEFAULT_BASE_URLS) + ")")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    try:
        for path in download_mnist(args.dest_dir, args.mirror, progress=not args.quiet).values():
            print(path)
    except DarknetError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
