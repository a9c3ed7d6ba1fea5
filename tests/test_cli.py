"""The command line as a user meets it."""

import json
import os
import subprocess
import sys

import pytest
from conftest import rng_for_test

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBIAN_CFG = "/usr/share/darknet/cfg"


def run(*args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "darknet_py", *args], capture_output=True,
                          text=True, env=env, cwd=kw.get("cwd", ROOT))


def test_cfg_summary_prints_darknets_table_with_params():
    r = run("cfg", "summary", "cfg/yolov3-tiny.cfg")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("layer     filters    size")
    assert lines[1].startswith("    0 conv     16  3 x 3 / 1   416 x 416 x   3   ->   416 x 416 x"
                               "  16  0.150 BFLOPs")
    assert lines[1].rstrip().endswith("464")           # 16*3*9 weights + 16 biases... + scales
    assert "    9 max          2 x 2 / 2    26 x  26 x 256   ->    13 x  13 x 256" in r.stdout
    assert "   20 route  19 8" in r.stdout
    assert lines[-1] == ("Total BFLOPs 5.565, parameters 8,852,366 (33.8 MB), "
                         "layer outputs 31.3 MB per image")


def test_cfg_summary_shows_receptive_field_and_memory():
    r = run("cfg", "summary", "cfg/yolov3-tiny.cfg")
    rows = {int(line[:5]): line for line in r.stdout.splitlines()[1:-1]}
    rf = lambda i: int(rows[i][85:90])  # noqa: E731
    # 3x3 convs and 2x2 pools: 3, 4, 8, 10 ... the 2x2/1 pool at 13x13 adds one 32-pixel step
    assert [rf(i) for i in (0, 1, 2, 3, 10, 11)] == [3, 4, 8, 10, 158, 190]
    assert rows[0].split()[-3:-1] == ["10.6", "MB"]          # 416*416*16 floats


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=8\nheight=8\nchannels=1\n[convolutional]\nsize=abc\n")
    r = run("cfg", "summary", str(bad))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"darknet_py: {bad}:6: error: [convolutional] option "
                                     "'size=abc': expected an integer"]
    assert "Traceback" not in r.stderr


def test_a_cfg_without_a_training_head_is_one_line_at_its_last_section(tmp_path):
    cfg = tmp_path / "nohead.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=1\n\n[convolutional]\nfilters=4\n"
                   "size=3\nactivation=leaky\n")
    r = run("train", str(cfg), "data/mnist.data")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"darknet_py: {cfg}:6: error: the cfg has no training head (its last section is "
        "[convolutional]): end it with [yolo] or [region] for a detector, [softmax] (or [cost], "
        "[logistic]) for a classifier"]


def test_missing_file_is_one_line():
    r = run("cfg", "summary", "nope.cfg")
    assert r.returncode == 2
    assert r.stderr.strip() == "darknet_py: nope.cfg: error: cannot read cfg file: No such file " \
                               "or directory"


def test_unknown_flag_is_rejected():
    r = run("cfg", "summary", "cfg/mnist.cfg", "--bogus")
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr


@pytest.mark.parametrize("args,flag", [
    (["train", "cfg/mnist.cfg", "data/mnist.data", "--max-batches", "-5"], "--max-batches"),
    (["train", "cfg/mnist.cfg", "data/mnist.data", "--backup-every", "0"], "--backup-every"),
    (["detector", "calc_anchors", "x.data", "-num_of_clusters", "0"], "-num_of_clusters"),
])
def test_counts_below_their_minimum_are_refused_naming_the_flag(args, flag):
    r = run(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"argument {flag}" in r.stderr and "expected a whole number >= " in r.stderr


@pytest.mark.skipif(not os.path.isdir(DEBIAN_CFG), reason="Debian's darknet cfgs not installed")
def test_every_debian_cfg_builds_or_names_the_unsupported_section():
    for name in sorted(os.listdir(DEBIAN_CFG)):
        if not name.endswith(".cfg"):
            continue
        r = run("cfg", "summary", os.path.join(DEBIAN_CFG, name))
        if r.returncode != 0:
            assert r.returncode == 2 and "Traceback" not in r.stderr, name
            (line,) = [ln for ln in r.stderr.splitlines() if "error:" in ln]
            assert f"{DEBIAN_CFG}/{name}:" in line and "not supported" in line, line


def test_import_does_not_need_cupy():
    code = ("import sys; sys.modules['cupy'] = None; import darknet_py; "
            "n = darknet_py.Network.from_cfg('cfg/mnist.cfg', warn=False); print(len(n.layers))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "7"


def test_the_command_line_imports_onnx_only_to_export():
    """Every command starts without the onnx package (~50 ms to import); `export onnx --help`
    still names the default opset."""
    code = ("import sys; from darknet_py.commands import main; "
            "print('onnx' in sys.modules, 'darknet_py.export.onnx' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]
    r = run("export", "onnx", "--help")
    assert r.returncode == 0 and "default 13" in r.stdout


def test_partial_keeps_the_first_n_layers_and_reset_clears_seen(tmp_path):
    import struct

    import numpy as np

    from darknet_py import Network
    net = Network.from_cfg(os.path.join(ROOT, "cfg/mnist.cfg"), seed=1, warn=False)
    net.seen = 640
    full = tmp_path / "full.weights"
    net.save_weights(full)
    r = run("partial", "cfg/mnist.cfg", str(full), str(tmp_path / "p.weights"), "2")
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "p.weights").read_bytes()
    assert struct.unpack("<3iQ", data[:20]) == (0, 2, 0, 0)
    assert len(data) == 20 + 4 * (16 * 4 + 16 * 9)        # layer 0 (BN conv) + maxpool
    r = run("reset", "cfg/mnist.cfg", str(full), str(tmp_path / "r.weights"))
    assert r.returncode == 0, r.stderr
    reset = (tmp_path / "r.weights").read_bytes()
    assert struct.unpack("<3iQ", reset[:20])[3] == 0 and reset[20:] == full.read_bytes()[20:]
    loaded = Network.from_cfg(os.path.join(ROOT, "cfg/mnist.cfg"), warn=False)
    assert loaded.load_weights(tmp_path / "p.weights", partial=True) == 2
    np.testing.assert_array_equal(loaded.layers[0].weights, net.layers[0].weights)
    # a cfg with another head takes the file's first layers; all of them would not fit it
    other = tmp_path / "other.cfg"
    other.write_text(open(os.path.join(ROOT, "cfg/mnist.cfg")).read().replace(
        "output=10", "output=7"))
    r = run("partial", str(other), str(full), str(tmp_path / "o.weights"), "2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.weights").read_bytes()[20:] == data[20:]
    r = run("partial", str(other), str(full), str(tmp_path / "o.weights"), "100")
    assert r.returncode == 2 and "does not match the cfg" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [("classify", "cfg/mnist.cfg", "x.weights", "x.png",
                                   "--device", "gpu"),
                                  ("train", "cfg/mnist.cfg", "data/mnist.data", "-gpus", "0,1")])
def test_the_gpu_without_cupy_is_a_one_line_error_saying_how_to_install_it(args):
    """-gpus 0,1 checks in the parent, before any replica starts (each died on
    ModuleNotFoundError)."""
    code = ("import sys; sys.modules['cupy'] = None; from darknet_py.commands import main; "
            f"sys.exit(main({list(args)!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        "darknet_py: error: the GPU engine is not installed (no CuPy): pip install "
        "'darknet_py[gpu]' (CuPy for CUDA 12, cuDNN), or train on the CPU with --device cpu")


def _mnist_with_statistics(tmp_path, rng, batch):
    """cfg/mnist.cfg with batch-norm statistics and scales that are not the initial ones, and
    its weights file."""
    from darknet_py import Network
    net = Network.from_cfg(os.path.join(ROOT, "cfg/mnist.cfg"), batch=batch, seed=3, warn=False)
    for layer in net.layers:
        if getattr(layer, "batch_normalize", False):
            layer.rolling_mean[:] = rng.uniform(-1, 1, layer.rolling_mean.shape)
            layer.rolling_variance[:] = rng.uniform(0.3, 2, layer.rolling_variance.shape)
            layer.scales[:] = rng.uniform(0.5, 2, layer.scales.shape)
    weights = tmp_path / "m.weights"
    net.save_weights(weights)
    return net, weights


def test_inference_commands_fold_batch_norm_unless_no_fuse(tmp_path):
    """detector test / classifier predict load with BN folded (AlexeyAB at load); --no-fuse keeps
    the rolling-statistics step.  Both print the same predictions."""
    import argparse

    import numpy as np

    from darknet_py.commands.common import load_for_inference
    cfg = os.path.join(ROOT, "cfg/mnist.cfg")
    rng = rng_for_test()
    _, weights = _mnist_with_statistics(tmp_path, rng, batch=1)
    args = dict(device="cpu", gpu_index=0, nogpu=False)
    fused = load_for_inference(argparse.Namespace(**args, no_fuse=False), cfg, weights)
    exact = load_for_inference(argparse.Namespace(**args, no_fuse=True), cfg, weights)
    assert [getattr(layer, "batch_normalize", False) for layer in fused.layers].count(True) == 0
    assert [getattr(layer, "batch_normalize", False) for layer in exact.layers].count(True) == 3
    x = rng.random((1, 1, 28, 28), dtype=np.float32)
    expected = exact.forward(x)
    np.testing.assert_allclose(fused.forward(x), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    from PIL import Image
    image = tmp_path / "digit.png"
    Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8)).save(image)
    outs = [run("classifier", "predict", "data/mnist.data", "cfg/mnist.cfg", str(weights),
                str(image), *flag) for flag in ((), ("--no-fuse",))]
    assert all(r.returncode == 0 for r in outs), [r.stderr for r in outs]
    predictions = [[line for line in r.stdout.splitlines() if "Predicted in" not in line]
                   for r in outs]
    assert len(predictions[0]) == 2 and predictions[0] == predictions[1]     # top=2


def test_fuse_folds_bn_and_keeps_inference_outputs(tmp_path):
    import numpy as np

    from darknet_py import Network
    cfg = os.path.join(ROOT, "cfg/mnist.cfg")
    rng = rng_for_test()
    net, weights = _mnist_with_statistics(tmp_path, rng, batch=2)
    r = run("fuse", "cfg/mnist.cfg", str(weights), str(tmp_path / "f.cfg"),
            str(tmp_path / "f.weights"))
    assert r.returncode == 0, r.stderr
    assert "Folded batch norm of 3 layers" in r.stdout
    fused = Network.from_cfg(tmp_path / "f.cfg", batch=2, warn=False)
    fused.load_weights(tmp_path / "f.weights")
    assert not any(getattr(layer, "batch_normalize", False) for layer in fused.layers)
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    expected = net.forward(x)
    np.testing.assert_allclose(fused.forward(x), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    folded_at_load = Network.from_cfg(cfg, batch=2, warn=False)
    folded_at_load.load_weights(weights, fuse=True)
    np.testing.assert_allclose(folded_at_load.forward(x), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())


def test_cfg_new_writes_a_ready_cfg(tmp_path):
    out = tmp_path / "three.cfg"
    r = run("cfg", "new", "--from", "yolov3-tiny", "--classes", "3", "-o", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.count("# classes=3: filters = 3 * (3 + 5); was 255\nfilters=24\n") == 2
    r = run("cfg", "summary", str(out))
    assert r.returncode == 0 and "24" in r.stdout
    r = run("cfg", "check", str(out))
    assert r.returncode == 0 and r.stdout == f"{out}: OK, no problems found\n"


@pytest.mark.skipif(not os.path.isdir(DEBIAN_CFG), reason="Debian's darknet cfgs are absent")
def test_cfg_check_fails_what_darknet_py_cannot_build_unless_darknet_only():
    cfg = os.path.join(DEBIAN_CFG, "yolov1.cfg")      # [local]
    r = run("cfg", "check", cfg)
    assert r.returncode == 1
    assert r.stdout.splitlines()[-1] == f"{cfg}: 1 error, 0 warnings"
    r = run("cfg", "check", "--darknet-only", cfg)
    assert r.returncode == 0
    assert r.stdout.splitlines()[-1] == f"{cfg}: 0 errors, 1 warning"


# -- Darknet's other top-level commands, against the darknet command itself --------------------
@pytest.mark.parametrize("cfg", ["yolov3-tiny.cfg", "yolov2-tiny.cfg", "tiny.cfg", "alexnet.cfg"])
def test_ops_prints_what_darknet_ops_prints(cfg, darknet_binary):
    path = os.path.join(DEBIAN_CFG, cfg)
    theirs = subprocess.run([darknet_binary, "ops", path], capture_output=True, text=True)
    want = [ln for ln in theirs.stdout.splitlines() if ln.startswith("Floating Point")]
    r = run("ops", path)
    assert r.returncode == 0 and len(want) == 2
    assert r.stdout.splitlines() == want


def test_rgbgr_writes_the_bytes_darknet_rgbgr_writes(tmp_path, darknet_binary):
    from darknet_py import Network
    cfg = os.path.join(DEBIAN_CFG, "yolov3-tiny.cfg")
    weights = tmp_path / "in.weights"
    Network.from_cfg(cfg, seed=5).save_weights(str(weights))
    subprocess.run([darknet_binary, "rgbgr", cfg, str(weights), str(tmp_path / "dk.weights")],
                   capture_output=True, check=True)
    r = run("rgbgr", cfg, str(weights), str(tmp_path / "dp.weights"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "dp.weights").read_bytes() == (tmp_path / "dk.weights").read_bytes()
    assert (tmp_path / "dp.weights").read_bytes() != weights.read_bytes()


def test_speed_times_forward_passes():
    r = run("speed", "cfg/mnist.cfg", "20", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[1].startswith("20 evals, ") and out[-1].startswith("Speed: ") \
        and out[-1].endswith(" Hz")


def test_flags_may_come_before_the_subcommand_like_the_hank_ai_fork():
    """darknet detector -map -dont_show train ...: argv is rearranged, not rejected."""
    from darknet_py.commands import _flags_after_subcommand, build_parser
    parser = build_parser()
    argv = ["detector", "-map", "-dont_show", "train", "a.data", "b.cfg"]
    assert _flags_after_subcommand(parser, argv) == \
        ["detector", "train", "-map", "-dont_show", "a.data", "b.cfg"]
    args = parser.parse_args(_flags_after_subcommand(parser, argv))
    assert args.map and args.dont_show and (args.data, args.cfg) == ("a.data", "b.cfg")
    same = ["detector", "test", "-thresh", ".3", "d", "c", "w"]
    assert _flags_after_subcommand(parser, same) == same


def test_version_says_what_darknet_py_runs_on():
    r = run("version")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("darknet_py ") and lines[1].startswith("Python ")
    assert "NumPy " in lines[1] and "Pillow " in lines[1]
    assert lines[2].startswith(("GPU: ", "CuPy "))


def test_an_output_that_cannot_be_written_is_one_line(tmp_path):
    from darknet_py import Network
    Network.from_cfg("cfg/mnist.cfg", seed=1).save_weights(str(tmp_path / "w.weights"))
    r = run("reset", "cfg/mnist.cfg", str(tmp_path / "w.weights"),
            str(tmp_path / "no" / "such" / "dir" / "out.weights"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    out = tmp_path / "no" / "such" / "dir" / "out.weights"
    # the path given, not the temporary file beside it (".out.weights.vxzgf2wa.tmp")
    assert r.stderr == (f"darknet_py: {out}: error: cannot write it: the folder {out.parent} "
                        "does not exist\n")


@pytest.mark.parametrize("args, flag", [
    (("train", "cfg/mnist.cfg", "data/mnist.data", "--seed", "-1"), "--seed"),
    (("train", "cfg/mnist.cfg", "data/mnist.data", "-gpus", "a,b"), "-gpus/--gpus"),
])
def test_bad_training_flags_are_one_line_naming_the_flag(args, flag):
    r = run(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"error: argument {flag}: expected" in r.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("args, flag, value", [
    (("detect", "a.cfg", "a.weights", "a.jpg", "-thresh"), "-thresh/--thresh", "-1"),
    (("detect", "a.cfg", "a.weights", "a.jpg", "-thresh"), "-thresh/--thresh", "nan"),
    (("detector", "test", "a.data", "a.cfg", "a.weights", "-nms"), "-nms/--nms", "-1"),
    (("detector", "test", "a.data", "a.cfg", "a.weights", "-nms"), "-nms/--nms", "inf"),
    (("detector", "map", "a.data", "a.cfg", "a.weights", "-iou_thresh"),
     "-iou_thresh/--iou-thresh", "5"),
    (("detector", "map", "a.data", "a.cfg", "a.weights", "-thresh"), "-thresh/--thresh", "1.5"),
    (("detector", "map", "a.data", "a.cfg", "a.weights", "-points"), "-points/--points", "1"),
    (("classifier", "predict", "a.data", "a.cfg", "a.weights", "-t"), "-t", "-3"),
    (("classifier", "valid", "a.data", "a.cfg", "a.weights", "-t"), "-t", "0"),
    (("classify", "a.cfg", "a.weights", "-t"), "-t", "x"),
    (("partial", "a.cfg", "a.weights", "out.weights"), "n", "-3"),
    (("cfg", "new", "--from", "mnist", "--classes"), "--classes", "-3"),
    (("train", "a.cfg", "a.data", "--max-batches"), "--max-batches", "0"),
])
def test_out_of_range_flags_are_one_line_naming_the_flag(args, flag, value, tmp_path):
    """Refused before any file is read (the files named do not exist), as argparse's one
    error line after the usage."""
    r = run(*args, value, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert f"error: argument {flag}: expected" in last and repr(value) in last, last


def test_the_range_limits_themselves_are_accepted():
    from darknet_py.commands.common import between
    from darknet_py.commands.detector import points
    assert [between(0, 1)(v) for v in ("0", "1", ".5", "1e-3")] == [0, 1, .5, 1e-3]
    assert [points(v) for v in ("0", "2", "11", "101")] == [0, 2, 11, 101]


@pytest.mark.parametrize("flag", ["--batch", "--steps"])
def test_bench_refuses_counts_below_one_naming_the_flag(flag):
    env = dict(os.environ, PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-m", "darknet_py.bench", "cfg/mnist.cfg", flag, "0",
                        "--device", "cpu"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"error: argument {flag}: expected a whole number >= 1, not 0" in r.stderr


def test_bench_names_a_bad_cfg_in_one_line(tmp_path, capsys):
    from darknet_py import bench
    missing = tmp_path / "missing.cfg"
    assert bench.main([str(missing), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err == f"python -m darknet_py.bench: {missing}: error: cannot read cfg file: No such " \
                  "file or directory\n"


def test_bench_profile_times_each_layer_type_of_the_step_and_of_inference(capsys):
    """``--profile``: the training step's time per layer type and pass, then the inference
    batch's per layer type (forward only), each over the network's layer types; the graphs
    (none on the CPU) are set aside and given back."""
    from darknet_py import bench
    assert bench.main([os.path.join(ROOT, "cfg/yolov3-tiny.cfg"), "--batch", "1", "--size", "64",
                       "--steps", "1", "--warmup", "0", "--device", "cpu", "--profile"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [next(iter(line)) for line in lines] == ["profile_ms", "profile_infer_ms", "peer"]
    types = {"convolutional", "maxpool", "route", "upsample", "activation"}
    train, infer = lines[0]["profile_ms"], lines[1]["profile_infer_ms"]
    assert set(train) == {f"{t}.{p}" for t in types for p in ("forward", "backward")}
    assert set(infer) == {f"{t}.forward" for t in types}
    assert all(v > 0 for v in (*train.values(), *infer.values()))


@pytest.mark.parametrize("argv, usage", [
    (["train", "data/mnist.data", "cfg/mnist.cfg"], "darknet_py train CFG DATA [WEIGHTS]"),
    (["detector", "train", "cfg/yolov3-tiny.cfg", "data/mnist.data"],
     "darknet_py detector train DATA CFG [WEIGHTS]"),
    (["classifier", "train", "cfg/mnist.cfg", "data/mnist.data"],
     "darknet_py classifier train DATA CFG [WEIGHTS]"),
])
def test_swapped_cfg_and_data_are_named_before_any_parse_error(argv, usage):
    r = run(*argv)
    assert r.returncode == 2
    assert r.stderr.startswith(f"darknet_py: error: arguments swapped? {usage} (")
    assert "classes" not in r.stderr and len(r.stderr.splitlines()) == 1


def test_no_arguments_print_the_help_as_darknet_prints_its_usage():
    r = run()
    assert r.returncode == 0 and r.stdout.startswith("usage: darknet_py")
    assert "detector" in r.stdout and "classifier" in r.stdout


def test_detection_thresholds_show_their_defaults_in_the_help():
    r = run("detector", "test", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "(default .25)" in text and "(default .45)" in text
