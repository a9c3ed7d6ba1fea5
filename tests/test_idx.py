"""IDX reading/writing, the embedded MNIST sample, Fashion-MNIST, and the MNIST downloader."""

import functools
import gzip
import hashlib
import http.server
import os
import re
import socket
import threading

import numpy as np
import pytest

from darknet_py.errors import DarknetError
from darknet_py.data.idx import (find_idx_pairs, labels_path_for, load_images_labels, read_idx,
                            write_idx)
from darknet_py.data.mnist import DEFAULT_BASE_URLS, MNIST_FILES, download_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data", "mnist")
FASHION = "/usr/share/datasets/fashion-mnist"


def one_line_error(excinfo, path):
    e = excinfo.value
    assert isinstance(e, DarknetError)
    assert e.path == str(path)
    text = str(e)
    assert "\n" not in text and text.startswith(f"{path}: error: ")
    return text


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_images_and_labels(tmp_path, suffix):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    ip = tmp_path / f"train-images-idx3-ubyte{suffix}"
    lp = tmp_path / f"train-labels-idx1-ubyte{suffix}"
    write_idx(ip, images)
    write_idx(lp, labels)
    raw = ip.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    head = gzip.decompress(raw)[:16] if suffix else raw[:16]
    assert head == bytes.fromhex("00000803 00000007 0000001c 0000001c".replace(" ", ""))
    x, y = load_images_labels(ip, lp)
    assert x.dtype == np.uint8 and y.dtype == np.uint8
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    x[0, 0, 0] = 1  # arrays are writable (not views of immutable bytes)
    assert sorted(os.listdir(tmp_path)) == sorted([ip.name, lp.name])  # no temp files left


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "float32", "float64"])
def test_round_trip_other_idx_types(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    write_idx(tmp_path / "a.idx", a)
    b = read_idx(tmp_path / "a.idx")
    assert b.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(a, b)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels.gz", a)
    os.rename(tmp_path / "labels.gz", tmp_path / "labels-idx1-ubyte")
    np.testing.assert_array_equal(read_idx(tmp_path / "labels-idx1-ubyte"), a)


def test_gzip_output_is_reproducible(tmp_path):
    a = np.arange(1000, dtype=np.uint8).reshape(10, 10, 10)
    write_idx(tmp_path / "a.gz", a)
    first = (tmp_path / "a.gz").read_bytes()
    write_idx(tmp_path / "a.gz", a)  # overwrite in place
    write_idx(tmp_path / "sub.gz", a)
    assert (tmp_path / "a.gz").read_bytes() == first
    assert gzip.decompress((tmp_path / "sub.gz").read_bytes()) == gzip.decompress(first)
    assert first[4:8] == b"\0\0\0\0"  # gzip mtime field


def test_write_refuses_unsupported_dtype_and_leaves_nothing(tmp_path):
    with pytest.raises(DarknetError) as ei:
        write_idx(tmp_path / "x.gz", np.zeros(3, dtype=np.uint64))
    one_line_error(ei, tmp_path / "x.gz")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- errors

def test_bad_magic(tmp_path):
    p = tmp_path / "bad-images-idx3-ubyte"
    p.write_bytes(b"\x12\x34\x08\x03" + bytes(12))
    with pytest.raises(DarknetError) as ei:
        read_idx(p)
    text = one_line_error(ei, p)
    assert "magic number 0x12340803" in text


def test_labels_file_given_as_images(tmp_path):
    lp = tmp_path / "l.gz"
    write_idx(lp, np.zeros(5, np.uint8))
    with pytest.raises(DarknetError) as ei:
        load_images_labels(lp, lp)
    assert "0x00000801" in one_line_error(ei, lp)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated(tmp_path, suffix):
    p = tmp_path / f"t-images-idx3-ubyte{suffix}"
    write_idx(p, np.ones((4, 28, 28), np.uint8) * 7)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 20])
    with pytest.raises(DarknetError) as ei:
        read_idx(p)
    assert "truncated" in one_line_error(ei, p)


def test_truncated_header_and_empty(tmp_path):
    p = tmp_path / "h"
    p.write_bytes(bytes.fromhex("00000803 00000001 0000001c".replace(" ", "")))
    with pytest.raises(DarknetError, match="header"):
        read_idx(p)
    p.write_bytes(b"")
    with pytest.raises(DarknetError, match="truncated"):
        read_idx(p)


def test_trailing_garbage(tmp_path):
    p = tmp_path / "g"
    write_idx(p, np.zeros(3, np.uint8))
    p.write_bytes(p.read_bytes() + b"xx")
    with pytest.raises(DarknetError, match="trailing"):
        read_idx(p)


def test_count_mismatch(tmp_path):
    ip, lp = tmp_path / "i.gz", tmp_path / "l.gz"
    write_idx(ip, np.zeros((5, 28, 28), np.uint8))
    write_idx(lp, np.zeros(4, np.uint8))
    with pytest.raises(DarknetError) as ei:
        load_images_labels(ip, lp)
    text = one_line_error(ei, lp)
    assert "5 images" in text and "4 labels" in text


def test_missing_file(tmp_path):
    with pytest.raises(DarknetError) as ei:
        read_idx(tmp_path / "nope.gz")
    one_line_error(ei, tmp_path / "nope.gz")


# ---------------------------------------------------------------- finding pairs

def test_find_idx_pairs(tmp_path):
    lab = np.zeros(2, np.uint8)
    img = np.zeros((2, 3, 3), np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", img)
    write_idx(tmp_path / "train-images-idx3-ubyte", img)  # plain copy wins over .gz
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", lab)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", img)  # dotted variant
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", lab)
    write_idx(tmp_path / "extra-images-idx3-ubyte.gz", img)  # no labels: left out
    (tmp_path / "notes.txt").write_text("x")
    pairs = find_idx_pairs(tmp_path)
    t = functools.partial(os.path.join, str(tmp_path))
    assert pairs == {
        "t10k": (t("t10k-images.idx3-ubyte"), t("t10k-labels.idx1-ubyte")),
        "train": (t("train-images-idx3-ubyte"), t("train-labels-idx1-ubyte.gz")),
    }
    assert labels_path_for(t("train-images-idx3-ubyte.gz")) == t("train-labels-idx1-ubyte.gz")
    with pytest.raises(DarknetError):
        labels_path_for(tmp_path / "extra-images-idx3-ubyte.gz")


# ---------------------------------------------------------------- the embedded sample

SAMPLE_COUNTS = {
    "train": [801, 902, 793, 826, 784, 690, 811, 856, 755, 782],
    "t10k": [200, 225, 198, 206, 196, 173, 203, 214, 189, 196],
}


def test_embedded_sample():
    pairs = find_idx_pairs(SAMPLE)
    assert set(pairs) == {"train", "t10k"}
    seen = []
    for split, n in (("train", 8000), ("t10k", 2000)):
        x, y = load_images_labels(*pairs[split])
        assert x.shape == (n, 28, 28) and y.shape == (n,)
        assert y.min() == 0 and y.max() == 9
        assert np.bincount(y, minlength=10).tolist() == SAMPLE_COUNTS[split]
        assert x.max() == 255 and x.min() == 0
        assert y[:50].tolist() != sorted(y[:50].tolist())  # shuffled, not grouped by class
        seen.append(x.reshape(n, -1))
    # train and t10k are disjoint: no t10k digit appears in train
    train = {row.tobytes() for row in seen[0]}
    assert not any(row.tobytes() in train for row in seen[1])


def test_embedded_sample_checksums_match_readme():
    readme = open(os.path.join(SAMPLE, "README.md")).read()
    row = r"\| `([a-z0-9-]+-ubyte\.gz)` \| [\d,]+ \| [\d,]+ \| `([0-9a-f]{64})` \|"
    listed = dict(re.findall(row, readme))
    assert len(listed) == 4
    for name, sha in listed.items():
        with open(os.path.join(SAMPLE, name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == sha, name


def test_mnist_data_file():
    fields = {}
    for line in open(os.path.join(ROOT, "data", "mnist.data")):
        k, _, v = line.strip().partition("=")
        fields[k.strip()] = v.strip()
    assert fields["classes"] == "10" and fields["top"] == "2"
    names = open(os.path.join(ROOT, fields["names"])).read().split()
    assert names == [str(i) for i in range(10)]
    for key in ("train", "valid"):
        images = os.path.join(ROOT, fields[key])
        assert os.path.isfile(images) and os.path.isfile(labels_path_for(images))


# ---------------------------------------------------------------- Fashion-MNIST

@pytest.mark.skipif(not os.path.isdir(FASHION),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_reads_with_the_same_loader():
    pairs = find_idx_pairs(FASHION)
    assert set(pairs) >= {"train", "t10k"}
    for split, n in (("train", 60000), ("t10k", 10000)):
        x, y = load_images_labels(*pairs[split])
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8
        assert np.bincount(y).tolist() == [n // 10] * 10


# ---------------------------------------------------------------- download (local server only)

def test_published_checksums():
    assert {k: v["md5"] for k, v in MNIST_FILES.items()} == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    assert DEFAULT_BASE_URLS[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(base_url, served_folder, request_log) of an HTTP server on 127.0.0.1."""
    root = tmp_path / "served"
    root.mkdir()
    log = []

    class Handler(_Quiet):
        def do_GET(self):
            log.append(self.path)
            super().do_GET()

    handler = functools.partial(Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/mnist/", root / "mnist", log
    finally:
        httpd.shutdown()
        httpd.server_close()


def _serve(folder, names_sizes, seed=0):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    expected = {}
    for name, size in names_sizes.items():
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        (folder / name).write_bytes(data)
        expected[name] = {"size": size, "md5": hashlib.md5(data).hexdigest(),
                          "sha256": hashlib.sha256(data).hexdigest()}
    return expected


def test_download_checksum_ok(server, tmp_path):
    base, folder, log = server
    files = _serve(folder, {"train-labels-idx1-ubyte.gz": 3000, "t10k-labels-idx1-ubyte.gz": 200_000})
    dest = tmp_path / "out"
    paths = download_mnist(dest, [base], progress=True, files=files)
    assert sorted(os.listdir(dest)) == sorted(files)
    for name, p in paths.items():
        assert open(p, "rb").read() == (folder / name).read_bytes()
    n = len(log)
    download_mnist(dest, [base], progress=False, files=files)  # already there: nothing fetched
    assert len(log) == n


def test_download_falls_back_to_next_mirror(server, tmp_path):
    base, folder, log = server
    files = _serve(folder, {"t10k-labels-idx1-ubyte.gz": 100})
    missing = base.replace("/mnist/", "/elsewhere")  # 404, and no trailing slash
    download_mnist(tmp_path / "out", [missing, base], progress=False, files=files)
    assert log == ["/elsewhere/t10k-labels-idx1-ubyte.gz", "/mnist/t10k-labels-idx1-ubyte.gz"]
    assert os.listdir(tmp_path / "out") == ["t10k-labels-idx1-ubyte.gz"]


def test_download_checksum_bad_leaves_no_file(server, tmp_path):
    base, folder, _ = server
    files = _serve(folder, {"t10k-labels-idx1-ubyte.gz": 4542})
    files["t10k-labels-idx1-ubyte.gz"]["md5"] = "0" * 32
    dest = tmp_path / "out"
    with pytest.raises(DarknetError) as ei:
        download_mnist(dest, [base], progress=False, files=files)
    text = one_line_error(ei, dest / "t10k-labels-idx1-ubyte.gz")
    assert "checksum mismatch: MD5" in text and "data/mnist/" in text
    assert os.listdir(dest) == []  # neither the file nor a .part


def test_download_real_checksums_reject_wrong_content(server, tmp_path):
    base, folder, _ = server
    _serve(folder, {"t10k-labels-idx1-ubyte.gz": 4542})  # right size, wrong bytes
    files = {"t10k-labels-idx1-ubyte.gz": MNIST_FILES["t10k-labels-idx1-ubyte.gz"]}
    with pytest.raises(DarknetError, match="MD5"):
        download_mnist(tmp_path / "out", [base], progress=False, files=files)
    assert os.listdir(tmp_path / "out") == []


def test_download_offline_message(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    dest = tmp_path / "out"
    with pytest.raises(DarknetError) as ei:
        download_mnist(dest, [f"http://127.0.0.1:{port}/mnist/"] * 2, progress=False, timeout=5)
    text = one_line_error(ei, dest / "train-images-idx3-ubyte.gz")
    assert "cannot download MNIST (no network?)" in text
    assert "the embedded 10,000-digit sample is in data/mnist/" in text
    assert os.listdir(dest) == []
