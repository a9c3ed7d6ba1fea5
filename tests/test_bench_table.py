"""benchmarks/gpu_vs_pytorch.py's table: each darknet_py precision against the peer's matching
mode, built the same from a run's JSON lines (``--rows``: what a time limit left)."""

import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_vs_pytorch.py")


def _module():
    spec = importlib.util.spec_from_file_location("gpu_vs_pytorch", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(peer, mode, train, infer, cfg="cfg/yolov3-tiny.cfg", batch=64, size=416):
    return {"peer": peer, "cfg": cfg, "batch": batch, "size": [size, size], "mode": mode,
            "train_ms": train, "infer_ms": infer}


ROWS = [_row("darknet_py", "fp32", 40.0, 12.0), _row("darknet_py", "fp16", 20.0, 5.0),
        {"peer": "darknet_py", "note": "a line without a case"},
        _row("pytorch", "fp32", 50.0, 10.0), _row("pytorch", "amp", 40.0, 8.0),
        _row("darknet_py", "fp32", 1.0, 0.5, cfg="cfg/mnist.cfg", batch=128, size=28)]


def test_the_table_pairs_each_precision_with_the_peers_mode():
    text = _module().table(_module().results_of(ROWS), ["fp32", "fp16"])
    lines = text.splitlines()
    assert lines[0] == ("| case | fp32 ms | PyTorch fp32 | ratio | fp16 ms | PyTorch amp | "
                        "ratio |")
    assert lines[2] == "| yolov3-tiny 416 b64, train step | 40.00 | 50.00 | 0.80 | 20.00 | " \
                       "40.00 | 0.50 |"
    assert lines[3] == "| yolov3-tiny 416 b64, inference | 12.00 | 10.00 | 1.20 | 5.00 | " \
                       "8.00 | 0.62 |"
    # a case the run did not finish: what it has, n/a for the rest
    assert lines[4] == "| mnist 28 b128, train step | 1.00 | n/a | n/a | n/a | n/a | n/a |"


def test_rows_rebuilds_the_table_of_a_run_cut_short(tmp_path):
    rows = tmp_path / "rows.txt"
    rows.write_text("gpu_vs_pytorch: something ran past --timeout\n" +
                    "".join(json.dumps(r) + "\n" for r in ROWS))
    r = subprocess.run([sys.executable, SCRIPT, "--rows", str(rows), "--precisions",
                        "fp32,fp16"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == _module().table(_module().results_of(ROWS), ["fp32", "fp16"]) + "\n"
    r = subprocess.run([sys.executable, SCRIPT, "--rows", str(tmp_path / "none.txt")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "none.txt" in r.stderr.splitlines()[-1]
