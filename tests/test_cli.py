"""The command line as a user meets it."""

import os
import subprocess
import sys

import pytest

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
    assert lines[-1] == "Total BFLOPs 5.565, parameters 8,852,366"


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=8\nheight=8\nchannels=1\n[convolutional]\nsize=abc\n")
    r = run("cfg", "summary", str(bad))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"darknet_py: {bad}:6: error: [convolutional] option "
                                     "'size=abc': expected an integer"]
    assert "Traceback" not in r.stderr


def test_missing_file_is_one_line():
    r = run("cfg", "summary", "nope.cfg")
    assert r.returncode == 2
    assert r.stderr.strip() == "darknet_py: nope.cfg: error: cannot read cfg file: No such file " \
                               "or directory"


def test_unknown_flag_is_rejected():
    r = run("cfg", "summary", "cfg/mnist.cfg", "--bogus")
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr


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
