"""ctypes + numpy wrapper around pjreddie Darknet (libdarknet.so), used as a test oracle.

The C shim (``darknet_shim.c``, next to this file) is compiled on first use with
``cc -O2 -shared -fPIC`` into a cache directory (``$DARKNET_ORACLE_CACHE`` or
``~/.cache/darknet_py_oracle``); the file name carries a hash of the shim source and
of the header, so editing the .c triggers a rebuild.

Caveat: Darknet reports many errors by calling ``exit()`` or ``abort()`` (missing
file, unknown activation in some paths, bad layer geometry...), which would kill the
Python process (``exit(0)`` even looks like a pass).  ``load`` checks that the files
exist; beyond that, only feed cfgs that Darknet is known to accept.  Known pj CPU
pitfalls to avoid in cfgs: ``[batchnorm]`` (segfaults), ``[deconvolutional]`` with
weights (SIGFPE), 1x1 conv with stride > 1 (wrong results).  Darknet also prints
its layer table and "Loading weights..." lines to stderr; that is expected.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

LIB_DIR = Path(os.environ.get("DARKNET_LIB_DIR", "/usr/lib/darknet"))
LIB = LIB_DIR / "libdarknet.so"
HEADER = LIB_DIR / "include" / "darknet.h"
SHIM_SRC = Path(__file__).with_name("darknet_shim.c")

# LAYER_TYPE enum of pj darknet.h, in order.
LAYER_TYPES = (
    "CONVOLUTIONAL", "DECONVOLUTIONAL", "CONNECTED", "MAXPOOL", "SOFTMAX", "DETECTION",
    "DROPOUT", "CROP", "ROUTE", "COST", "NORMALIZATION", "AVGPOOL", "LOCAL", "SHORTCUT",
    "ACTIVE", "RNN", "GRU", "LSTM", "CRNN", "BATCHNORM", "NETWORK", "XNOR", "REGION",
    "YOLO", "ISEG", "REORG", "UPSAMPLE", "LOGXENT", "L2NORM", "BLANK",
)

# Names accepted by DarknetNet.get / DarknetNet.set (see layer_array in the shim).
ARRAYS = (
    "output", "delta", "x", "x_norm", "biases", "bias_updates", "weights", "weight_updates",
    "scales", "scale_updates", "rolling_mean", "rolling_variance", "mean", "variance",
)

_F32P = ctypes.POINTER(ctypes.c_float)
_VP = ctypes.c_void_p


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_F32P)


def _cache_dir() -> Path:
    d = os.environ.get("DARKNET_ORACLE_CACHE")
    return Path(d) if d else Path.home() / ".cache" / "darknet_py_oracle"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


class DarknetOracle:
    """Loads the compiled shim once per process; ``load`` returns DarknetNet handles."""

    _lib: ctypes.CDLL | None = None

    @staticmethod
    def available() -> tuple[bool, str]:
        """(True, "") if libdarknet.so, darknet.h and a C compiler are present, else (False, reason)."""
        for p in (LIB, HEADER, SHIM_SRC):
            if not p.is_file():
                return False, f"missing {p}"
        if _compiler() is None:
            return False, "no C compiler (cc) on PATH"
        return True, ""

    @classmethod
    def build(cls) -> Path:
        """Compile the shim if the cached .so is missing; return its path."""
        ok, why = cls.available()
        if not ok:
            raise RuntimeError(f"Darknet oracle unavailable: {why}")
        key = hashlib.sha256(SHIM_SRC.read_bytes() + HEADER.read_bytes() + str(LIB).encode())
        out = _cache_dir() / f"darknet_shim-{key.hexdigest()[:16]}.so"
        if out.is_file():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        cmd = [_compiler(), "-O2", "-shared", "-fPIC", "-std=gnu99", f"-I{HEADER.parent}",
               str(SHIM_SRC), "-o", tmp, f"-L{LIB_DIR}", f"-Wl,-rpath,{LIB_DIR}", "-ldarknet", "-lm"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
            os.replace(tmp, out)  # atomic: concurrent builders are harmless
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"building the Darknet shim failed:\n{' '.join(cmd)}\n{e.stderr}") from e
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return out

    @classmethod
    def lib(cls) -> ctypes.CDLL:
        if cls._lib is None:
            lib = ctypes.CDLL(str(cls.build()))
            sig = {
                "shim_load": (_VP, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]),
                "shim_free": (None, [_VP]),
                "shim_save": (None, [_VP, ctypes.c_char_p]),
                "shim_cost": (ctypes.c_float, [_VP]),
                "shim_get_seen": (ctypes.c_size_t, [_VP]),
                "shim_set_seen": (None, [_VP, ctypes.c_size_t]),
                "shim_current_rate": (ctypes.c_float, [_VP]),
                "shim_layer_get": (ctypes.c_int, [_VP, ctypes.c_int, ctypes.c_char_p, _F32P]),
                "shim_layer_set": (ctypes.c_int, [_VP, ctypes.c_int, ctypes.c_char_p, _F32P, ctypes.c_int]),
                "shim_layer_output": (None, [_VP, ctypes.c_int, _F32P]),
                "shim_randomize_bn": (None, [_VP, ctypes.c_uint]),
                "shim_forward": (None, [_VP, _F32P, ctypes.c_int]),
                "shim_train_step": (ctypes.c_float, [_VP, _F32P, _F32P]),
            }
            for name in ("n_layers", "batch", "subdivisions", "inputs", "truths",
                         "net_h", "net_w", "net_c"):
                sig[f"shim_{name}"] = (ctypes.c_int, [_VP])
            for name in ("type", "outputs", "inputs", "out_w", "out_h", "out_c", "batch_normalize"):
                sig[f"shim_layer_{name}"] = (ctypes.c_int, [_VP, ctypes.c_int])
            for name, (res, args) in sig.items():
                f = getattr(lib, name)
                f.restype, f.argtypes = res, args
            cls._lib = lib
        return cls._lib

    @classmethod
    def load(cls, cfg, weights=None, batch: int = 1, seed: int = 1) -> "DarknetNet":
        """parse_network_cfg(cfg) after srand(seed); load_weights if given; set_batch_network(batch).

        batch <= 0 keeps the cfg's batch/subdivisions; a larger batch than that is refused
        (Darknet would not reallocate its buffers)."""
        lib = cls.lib()
        for p in (cfg, weights):
            if p is not None and not Path(p).is_file():
                raise FileNotFoundError(p)  # Darknet would exit(0) the whole process
        h = lib.shim_load(os.fsencode(cfg), os.fsencode(weights) if weights else None,
                          int(batch), int(seed) & 0xFFFFFFFF)
        if not h:
            raise ValueError(f"Darknet refused {cfg} with batch={batch} "
                             "(batch larger than cfg batch/subdivisions?)")
        return DarknetNet(lib, h)


class DarknetNet:
    """One pj ``network*``.  Arrays are copied in and out; nothing aliases C memory."""

    def __init__(self, lib: ctypes.CDLL, handle: int):
        self._lib, self._h = lib, handle

    # -- lifetime --
    def close(self) -> None:
        if self._h:
            self._lib.shim_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _handle(self):
        if not self._h:
            raise ValueError("network is closed")
        return self._h

    def _layer(self, i: int) -> int:
        n = self.n_layers
        if not -n <= i < n:
            raise IndexError(f"layer {i} out of range for {n} layers")
        return i % n

    # -- geometry --
    @property
    def n_layers(self) -> int:
        return self._lib.shim_n_layers(self._handle())

    @property
    def batch(self) -> int:
        """Mini-batch of one forward pass (cfg batch/subdivisions, or the load() batch)."""
        return self._lib.shim_batch(self._handle())

    @property
    def subdivisions(self) -> int:
        return self._lib.shim_subdivisions(self._handle())

    @property
    def inputs(self) -> int:
        return self._lib.shim_inputs(self._handle())

    @property
    def truths(self) -> int:
        return self._lib.shim_truths(self._handle())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of the [net] section."""
        h = self._handle()
        return (self._lib.shim_net_c(h), self._lib.shim_net_h(h), self._lib.shim_net_w(h))

    def layer_type(self, i: int) -> str:
        return LAYER_TYPES[self._lib.shim_layer_type(self._handle(), self._layer(i))]

    def layer_outputs(self, i: int) -> int:
        return self._lib.shim_layer_outputs(self._handle(), self._layer(i))

    def layer_shape(self, i: int) -> tuple[int, int, int]:
        """(out_c, out_h, out_w) of layer i."""
        h, i = self._handle(), self._layer(i)
        return (self._lib.shim_layer_out_c(h, i), self._lib.shim_layer_out_h(h, i),
                self._lib.shim_layer_out_w(h, i))

    # -- state --
    @property
    def seen(self) -> int:
        return self._lib.shim_get_seen(self._handle())

    @seen.setter
    def seen(self, value: int) -> None:
        self._lib.shim_set_seen(self._handle(), int(value))

    @property
    def cost(self) -> float:
        """*net->cost after the last forward (NaN if the net has no cost layer)."""
        return self._lib.shim_cost(self._handle())

    @property
    def current_rate(self) -> float:
        """get_current_rate(net) for the current seen."""
        return self._lib.shim_current_rate(self._handle())

    def get(self, i: int, name: str) -> np.ndarray | None:
        """Copy of layer i's float array `name` (one of ARRAYS), or None if it has none."""
        h, i, key = self._handle(), self._layer(i), name.encode()
        n = self._lib.shim_layer_get(h, i, key, None)
        if n < 0:
            if name not in ARRAYS:
                raise KeyError(name)
            return None
        out = np.empty(n, np.float32)
        self._lib.shim_layer_get(h, i, key, _ptr(out))
        return out

    def set(self, i: int, name: str, values) -> None:
        """Overwrite layer i's array `name`; values must have exactly its length."""
        a = np.ascontiguousarray(values, dtype=np.float32).ravel()
        if self._lib.shim_layer_set(self._handle(), self._layer(i), name.encode(), _ptr(a), a.size):
            raise ValueError(f"layer {i} has no array {name!r} of length {a.size}")

    def layer_output(self, i: int) -> np.ndarray:
        """Layer i's output after the last forward, shape (batch, outputs)."""
        h, i = self._handle(), self._layer(i)
        out = np.empty((self.batch, self._lib.shim_layer_outputs(h, i)), np.float32)
        self._lib.shim_layer_output(h, i, _ptr(out))
        return out

    def randomize_bn(self, seed: int = 1) -> None:
        """Deterministic non-trivial BN statistics/biases (see shim_randomize_bn)."""
        self._lib.shim_randomize_bn(self._handle(), int(seed) & 0xFFFFFFFF)

    def save(self, path) -> None:
        """save_weights (header 0,2,0 + 64-bit seen, then the layer records)."""
        self._lib.shim_save(self._handle(), os.fsencode(path))

    # -- running --
    def _batch_array(self, x, per_item: int, what: str) -> np.ndarray:
        a = np.ascontiguousarray(x, dtype=np.float32)
        if a.ndim == 0 or a.shape[0] != self.batch or a.size != self.batch * per_item:
            raise ValueError(f"{what} of shape {a.shape} does not match batch={self.batch} "
                             f"x {per_item} values")
        return a

    def forward(self, x, train: bool = False) -> None:
        """forward_network on x of shape (batch, C, H, W) (or (batch, inputs)); truth = delta = NULL.

        train=True uses batch statistics in BN and updates the rolling averages."""
        a = self._batch_array(x, self.inputs, "input")
        self._lib.shim_forward(self._handle(), _ptr(a), int(bool(train)))

    def train_step(self, x, truth) -> float:
        """train_network_datum: seen += batch; forward; backward; update every `subdivisions`
        calls.  truth has shape (batch, truths).  Returns *net->cost (mini-batch sum)."""
        a = self._batch_array(x, self.inputs, "input")
        t = self._batch_array(truth, self.truths, "truth")
        return self._lib.shim_train_step(self._handle(), _ptr(a), _ptr(t))

    # -- detection (pj examples/detector.c test_detector), see the shim's shim_detect_* --
    @property
    def net_classes(self) -> int:
        """classes of the last layer (what get_network_boxes sizes each prob array by)."""
        return _detect_lib().shim_layer_classes(self._handle(), self.n_layers - 1)

    def detect_image(self, img, thresh: float = 0.5, hier: float = 0.5, nms: float = 0.45,
                     relative: bool = True):
        """letterbox_image + network_predict + get_network_boxes + do_nms_sort (nms > 0) on a
        planar float image ``img`` of shape (c, h, w).

        Returns ``(sized, dets)``: the letterboxed network input (c, net_h, net_w) and the
        detections in Darknet's final array order, shape (nboxes, 5 + classes) with rows
        ``x, y, w, h, objectness, prob[0..classes-1]``."""
        lib = _detect_lib()
        a = np.ascontiguousarray(img, dtype=np.float32)
        if a.ndim != 3:
            raise ValueError(f"image must be (c, h, w), got shape {a.shape}")
        c, h, w = a.shape
        sized, out, cap = self._detect_buffers(c)
        n = lib.shim_detect_image(self._handle(), _ptr(a), w, h, c, float(thresh), float(hier),
                                  float(nms), int(bool(relative)), _ptr(sized), _ptr(out), cap)
        return sized, out[:n].copy()

    def detect_file(self, path, thresh: float = 0.5, hier: float = 0.5, nms: float = 0.45,
                    relative: bool = True):
        """load_image_color(path, 0, 0) then ``detect_image``.

        Returns ``(sized, dets, (w, h))`` with the original image size."""
        if not Path(path).is_file():
            raise FileNotFoundError(path)
        lib = _detect_lib()
        sized, out, cap = self._detect_buffers(3)
        whc = (ctypes.c_int * 3)()
        n = lib.shim_detect_file(self._handle(), os.fsencode(path), float(thresh), float(hier),
                                 float(nms), int(bool(relative)), _ptr(sized), _ptr(out), cap,
                                 whc)
        return sized, out[:n].copy(), (whc[0], whc[1])

    # -- [region] tree= (YOLO9000) in pj's GPU order, see the shim's region_tree_forward --
    def region_tree_forward(self, i: int, x, truth=None) -> float:
        """Layer i (a [region] with tree=) on its input ``x`` (batch, C, H, W): pj's group
        softmax as its GPU forward lays it out, then its CPU forward (and loss, with
        ``truth`` (batch, truths)).  Read ``get(i, "output")`` / ``"delta"`` after; returns
        the layer's cost (0 without truth)."""
        lib = _tree_lib()
        a = np.ascontiguousarray(x, dtype=np.float32)
        t = None if truth is None else self._batch_array(truth, self.truths, "truth")
        return lib.shim_region_tree_forward(self._handle(), self._layer(i), _ptr(a),
                                            None if t is None else _ptr(t))

    def region_tree_detect(self, x, w: int, h: int, thresh: float = 0.5, hier: float = 0.5,
                           map=None, relative: bool = True):
        """region_tree_forward of the last layer on its input ``x``, then get_network_boxes
        (no NMS); rows as ``detect_image``'s.  ``map``: 200 class numbers or None."""
        lib = _tree_lib()
        a = np.ascontiguousarray(x, dtype=np.float32)
        cap = _detect_lib().shim_max_boxes(self._handle())
        out = np.zeros((max(cap, 1), 5 + self.net_classes), np.float32)
        m = None
        if map is not None:
            m = np.ascontiguousarray(map, dtype=np.int32)
            if m.size != 200:
                raise ValueError("pj's get_region_detections reads 200 map entries")
        n = lib.shim_region_tree_detect(
            self._handle(), _ptr(a), int(w), int(h), float(thresh), float(hier),
            None if m is None else m.ctypes.data_as(ctypes.POINTER(ctypes.c_int)),
            int(bool(relative)), _ptr(out), cap)
        return out[:n].copy()

    def _detect_buffers(self, c: int):
        lib = _detect_lib()
        _, nh, nw = self.input_shape
        cap = lib.shim_max_boxes(self._handle())
        sized = np.zeros((c, nh, nw), np.float32)
        out = np.zeros((max(cap, 1), 5 + self.net_classes), np.float32)
        return sized, out, cap


def _detect_lib() -> ctypes.CDLL:
    """DarknetOracle.lib() with the detection/image functions of the shim declared."""
    lib = DarknetOracle.lib()
    if not getattr(lib, "_detect_declared", False):
        ip = ctypes.POINTER(ctypes.c_int)
        sig = {
            "shim_layer_classes": (ctypes.c_int, [_VP, ctypes.c_int]),
            "shim_layer_n": (ctypes.c_int, [_VP, ctypes.c_int]),
            "shim_max_boxes": (ctypes.c_int, [_VP]),
            "shim_load_image_color": (ctypes.c_int, [ctypes.c_char_p, _F32P, ctypes.c_int, ip]),
            "shim_resize_image": (None, [_F32P] + [ctypes.c_int] * 5 + [_F32P]),
            "shim_rotate_crop_image": (None, [_F32P] + [ctypes.c_int] * 3
                                       + [ctypes.c_float] * 2 + [ctypes.c_int] * 2
                                       + [ctypes.c_float] * 3 + [_F32P]),
            "shim_letterbox_image": (None, [_F32P] + [ctypes.c_int] * 5 + [_F32P]),
            "shim_detect_image": (ctypes.c_int, [_VP, _F32P, ctypes.c_int, ctypes.c_int,
                                                 ctypes.c_int, ctypes.c_float, ctypes.c_float,
                                                 ctypes.c_float, ctypes.c_int, _F32P, _F32P,
                                                 ctypes.c_int]),
            "shim_detect_file": (ctypes.c_int, [_VP, ctypes.c_char_p, ctypes.c_float,
                                                ctypes.c_float, ctypes.c_float, ctypes.c_int,
                                                _F32P, _F32P, ctypes.c_int, ip]),
        }
        for name, (res, args) in sig.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        lib._detect_declared = True
    return lib


def _tree_lib() -> ctypes.CDLL:
    """DarknetOracle.lib() with the shim's tree [region] functions declared."""
    lib = _detect_lib()
    if not getattr(lib, "_tree_declared", False):
        lib.shim_region_tree_forward.restype = ctypes.c_float
        lib.shim_region_tree_forward.argtypes = [_VP, ctypes.c_int, _F32P, _F32P]
        lib.shim_region_tree_detect.restype = ctypes.c_int
        lib.shim_region_tree_detect.argtypes = [
            _VP, _F32P, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_float,
            ctypes.POINTER(ctypes.c_int), ctypes.c_int, _F32P, ctypes.c_int]
        lib._tree_declared = True
    return lib


def load_image_color(path) -> np.ndarray:
    """Darknet's load_image_color(path, 0, 0): float32 (3, h, w), RGB, byte/255.

    Debian's libdarknet is built with OpenCV, so this is cv::imread (which, unlike pj's stb
    path, applies a JPEG's EXIF orientation).  Darknet returns a 10x10 black image for an
    unreadable file (and appends it to ./bad.list), so the file must exist."""
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    lib = _detect_lib()
    whc = (ctypes.c_int * 3)()
    n = lib.shim_load_image_color(os.fsencode(path), None, 0, whc)
    out = np.empty(n, np.float32)
    lib.shim_load_image_color(os.fsencode(path), _ptr(out), n, whc)
    return out.reshape(whc[2], whc[1], whc[0])


def _image_op(fn, img, w: int, h: int) -> np.ndarray:
    a = np.ascontiguousarray(img, dtype=np.float32)
    if a.ndim != 3:
        raise ValueError(f"image must be (c, h, w), got shape {a.shape}")
    c, ih, iw = a.shape
    out = np.empty((c, int(h), int(w)), np.float32)
    fn(_ptr(a), iw, ih, c, int(w), int(h), _ptr(out))
    return out


def resize_image(img, w: int, h: int) -> np.ndarray:
    """Darknet's resize_image of a (c, h, w) float image to (c, h, w)."""
    return _image_op(_detect_lib().shim_resize_image, img, w, h)


def letterbox_image(img, w: int, h: int) -> np.ndarray:
    """Darknet's letterbox_image of a (c, h, w) float image into a w x h canvas."""
    return _image_op(_detect_lib().shim_letterbox_image, img, w, h)


def rotate_crop_image(img, rad: float, s: float, w: int, h: int, dx: float, dy: float,
                      aspect: float) -> np.ndarray:
    """Darknet's rotate_crop_image of a (c, h, w) float image to (c, h, w)."""
    a = np.ascontiguousarray(img, dtype=np.float32)
    c, ih, iw = a.shape
    out = np.empty((c, int(h), int(w)), np.float32)
    _detect_lib().shim_rotate_crop_image(_ptr(a), iw, ih, c, rad, s, int(w), int(h), dx, dy,
                                         aspect, _ptr(out))
    return out
