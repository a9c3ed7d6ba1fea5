"""``export onnx``: the ONNX file, run in onnxruntime, computes what darknet_py's forward computes
(max |onnx - darknet_py| / max |darknet_py| <= 1e-4 per output) for cfg/mnist.cfg and pj's
yolov2-tiny and yolov3-tiny (Debian's /usr/share/darknet/cfg, at 160x160 to stay fast), with
seeded random weights (batch norm statistics too) saved by Network.save_weights; and for small
cfgs of every other layer type the export knows.  darknet_py's side keeps batch norm unfolded,
so the fold is checked as well."""

import os
import re
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

onnx = pytest.importorskip("onnx", reason="the [onnx] extra (pip install onnx onnxruntime)")
ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra (pip install onnxruntime)")

from darknet_py import Network  # noqa: E402
from darknet_py.commands import main  # noqa: E402
from darknet_py.detection.detect import get_network_boxes  # noqa: E402
from darknet_py.errors import NotSupportedError  # noqa: E402
from darknet_py.export.onnx import build_model  # noqa: E402

DEBIAN_CFG = "/usr/share/darknet/cfg"
TOL = 1e-4


def _at_size(text, size):
    for key in ("width", "height"):
        text = re.sub(rf"(?m)^{key}\s*=.*$", f"{key}={size}", text, count=1)
    return text


def _random_bn(net, rng):
    """Batch-norm statistics that matter (a fresh network's are 0 and 1)."""
    for layer in net.layers:
        if getattr(layer, "batch_normalize", False) or layer.type == "batchnorm":
            n = layer.rolling_mean.shape
            layer.rolling_mean[:] = rng.normal(0, 0.2, n)
            layer.rolling_variance[:] = rng.uniform(0.5, 2, n)
            layer.scales[:] = rng.uniform(0.5, 1.5, n)
            layer.biases[:] = rng.normal(0, 0.2, n)


def _case(tmp_path, text, rng, name="net", tame=False):
    """cfg and weights files of a seeded random network; ``tame``: the convolutions before the
    heads scaled down, for boxes of sensible size (detection drops absurd ones)."""
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(text)
    net = Network.from_cfg(str(cfg), batch=1, seed=int(rng.integers(1 << 30)), warn=False)
    _random_bn(net, rng)
    for before, layer in zip(net.layers, net.layers[1:]):
        if tame and layer.type in ("yolo", "region"):
            before.weights *= 0.05
    net.save_weights(str(tmp_path / f"{name}.weights"))
    return cfg, tmp_path / f"{name}.weights"


def _reference(cfg, weights, batch):
    """darknet_py's own forward (batch norm unfolded) at ``batch``."""
    net = Network.from_cfg(str(cfg), batch=batch, warn=False)
    net.load_weights(str(weights))
    return net


def _outputs(net):
    heads = [layer for layer in net.layers if layer.type in ("yolo", "region")]
    return [layer.output for layer in heads] or [net.output_layer.output]


def _max_rel(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def _check(tmp_path, cfg, weights, rng, batch=2, flags=()):
    out = tmp_path / (cfg.stem + ".onnx")
    assert main(["export", "onnx", str(cfg), str(weights), str(out), "--dynamic-batch",
                 *flags]) == 0
    onnx.checker.check_model(str(out))
    assert onnx.load(str(out)).opset_import[0].version >= 13
    net = _reference(cfg, weights, batch)
    x = rng.random((batch,) + net.input_shape, dtype=np.float32)
    net.forward(x)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})
    want = _outputs(net)
    assert len(got) == len(want)
    errors = [_max_rel(g, w.reshape(g.shape)) for g, w in zip(got, want)]
    assert max(errors) <= TOL, errors
    return net, x, session, errors


@pytest.mark.parametrize("name", ["mnist", "yolov2-tiny", "yolov3-tiny"])
def test_onnxruntime_computes_darknet_py_forward(tmp_path, rng, name, capsys):
    path = os.path.join(ROOT, "cfg", "mnist.cfg") if name == "mnist" else \
        os.path.join(DEBIAN_CFG, f"{name}.cfg")
    if not os.path.exists(path):
        pytest.skip(f"{path} missing (apt-get install darknet)")
    with open(path) as f:
        text = f.read()
    cfg, weights = _case(tmp_path, text if name == "mnist" else _at_size(text, 160), rng, name)
    _, _, _, errors = _check(tmp_path, cfg, weights, rng)
    assert "Wrote" in capsys.readouterr().out
    with capsys.disabled():           # the numbers, under pytest -s
        print(f" {name}: onnxruntime max relative error {max(errors):.2e}", end="")


def test_decoded_heads_are_get_network_boxes(tmp_path, rng):
    """--decode: boxes and scores equal what detector test decodes (no letterbox to undo when
    the image is the network's size), in pj's order, for [yolo] and [region] heads."""
    for name in ("yolov3-tiny", "yolov2-tiny"):
        path = os.path.join(DEBIAN_CFG, f"{name}.cfg")
        if not os.path.exists(path):
            pytest.skip(f"{path} missing (apt-get install darknet)")
        with open(path) as f:
            cfg, weights = _case(tmp_path, _at_size(f.read(), 96), rng, name, tame=True)
        out = tmp_path / f"{name}-decoded.onnx"
        assert main(["export", "onnx", str(cfg), str(weights), str(out), "--decode"]) == 0
        net = _reference(cfg, weights, 1)
        x = rng.random((1,) + net.input_shape, dtype=np.float32)
        net.forward(x)
        boxes, scores = ort.InferenceSession(str(out)).run(None, {"input": x})
        dets = get_network_boxes(net, 96, 96, thresh=-1.0)
        want_boxes = np.array([tuple(d.bbox) for d in dets], np.float32)
        want_scores = np.array([d.prob for d in dets], np.float32)
        assert boxes.shape == (1,) + want_boxes.shape
        assert _max_rel(boxes[0], want_boxes) <= TOL
        assert _max_rel(scores[0], want_scores) <= TOL


LAYERS_CFG = """[net]
width=24
height=24
channels=4
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
groups=2
activation=mish
[maxpool]
size=3
stride=2
[reorg3d]
stride=2
[convolutional]
filters=8
size=1
stride=1
activation=swish
[route]
layers=-1,-2
groups=2
group_id=1
[shortcut]
from=-3
activation=relu6
[batchnorm]
[activation]
activation=gelu
[upsample]
stride=2
[convolutional]
filters=16
size=3
stride=2
pad=1
activation=hard_mish
[reorg]
stride=2
[dropout]
probability=0.3
[convolutional]
filters=4
size=1
stride=1
activation=elu
[softmax]
spatial=1
[logistic]
[avgpool]
[connected]
output=5
activation=selu
[connected]
output=6
activation=tanh
[softmax]
groups=2
temperature=2
"""


def test_every_exportable_layer_type(tmp_path, rng):
    cfg, weights = _case(tmp_path, LAYERS_CFG, rng, "layers")
    net, x, session, errors = _check(tmp_path, cfg, weights, rng, batch=3)
    got = session.run(None, {"input": x[:1]})                     # the batch is dynamic
    assert _max_rel(got[0], np.asarray(net.output_layer.output[:1]).reshape(got[0].shape)) <= TOL


def test_pj_maxpool_padding_with_odd_sizes(tmp_path, rng):
    """pj's maxpool pads padding/2 before and the rest after (yolov3-tiny's size=2 stride=1,
    and odd maps with stride 2 and an explicit padding)."""
    text = ("[net]\nwidth=13\nheight=11\nchannels=3\n"
            "[maxpool]\nsize=2\nstride=1\n[maxpool]\nsize=2\nstride=2\n"
            "[maxpool]\nsize=3\nstride=2\npadding=3\n[maxpool]\nsize=2\nstride=2\npadding=0\n")
    cfg, weights = _case(tmp_path, text, rng, "pools")
    _check(tmp_path, cfg, weights, rng)


def test_a_layer_onnx_cannot_express_names_its_cfg_line(tmp_path, rng, capsys):
    text = ("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=1\n"
            "activation=stair\n")
    cfg, weights = _case(tmp_path, text, rng, "stair")
    assert main(["export", "onnx", str(cfg), str(weights), str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"darknet_py: {cfg}:5: error: [convolutional] activation=stair: not "
                   "expressible in the ONNX export"]
    assert not (tmp_path / "x.onnx").exists()
    net = Network.from_cfg_text("[net]\nwidth=8\nheight=8\nchannels=3\n[crop]\ncrop_width=4\n"
                                "crop_height=4\n", "crop.cfg", warn=False)
    with pytest.raises(NotSupportedError, match=r"crop.cfg:5: .*\[crop\] layers cannot be"):
        build_model(net)
