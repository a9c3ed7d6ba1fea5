"""Every cfg ``darknet_py cfg new`` writes loads in pjreddie's Darknet (libdarknet, the oracle)
with the same layer sizes and the same learning-rate schedule darknet_py reads.

pj's read_option (pj:src/option_list.c) keeps everything after the ``=``, an inline comment
included, and parse_net_options (pj:src/parser.c) counts the commas of ``steps`` to walk
``scales``: ``steps=4800,5400  # 80%, 90%`` made it read past ``scales`` and segfault.  Darknet
is loaded in a child process so that a crash is a failed test, not a dead test run.
"""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import require_darknet
from darknet_py.cfg.check import check_cfg
from darknet_py.cfg.edit import CfgDocument
from darknet_py.cfg.parser import read_cfg
from darknet_py.commands import main
from darknet_py.nn.network import Network

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from oracle.darknet import DarknetOracle  # noqa: E402

pytestmark = pytest.mark.darknet

# Load the cfg with the batch it declares (parse_network_cfg) and report what Darknet read:
# every layer's output size and get_current_rate at a few iteration counts.
PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from oracle.darknet import DarknetOracle
net = DarknetOracle.load(sys.argv[2], batch=0)
outputs = [net.layer_outputs(i) for i in range(net.n_layers)]
per_step = net.batch * net.subdivisions
rates = {}
for it in json.loads(sys.argv[3]):
    net.seen = it * per_step
    rates[it] = net.current_rate
print(json.dumps({"outputs": outputs, "rates": rates}))
"""


@pytest.fixture(scope="module", autouse=True)
def oracle():
    ok, why = DarknetOracle.available()
    require_darknet(ok, why, "cfg new templates through libdarknet")
    DarknetOracle.build()


def darknet_reads(cfg, iterations):
    done = subprocess.run([sys.executable, "-c", PROBE, HERE, str(cfg), json.dumps(iterations)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (f"libdarknet could not load {cfg} (exit {done.returncode}):\n"
                                  f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def schedule(cfg):
    """(iteration -> learning rate) expected from darknet_py's reading of the [net] steps."""
    parsed = read_cfg(str(cfg))
    net = Network(parsed, batch=1, seed=0, warn=False)
    doc = CfgDocument.load(cfg).net
    lr = doc.get("learning_rate", 0.001, float)
    steps, scales = doc.get("steps", type=list), doc.get("scales", type=list)
    burn_in = doc.get("burn_in", 0, int)
    its = [max(burn_in, 1) + 1] + [s + 1 for s in steps]
    expected = {}
    for it in its:
        rate = lr
        for step, scale in zip(steps, scales):
            if it >= step:      # pj:src/network.c get_current_rate: `if(steps[i] > batch_num)`
                rate *= scale
        expected[str(it)] = rate
    return net, expected


@pytest.mark.parametrize("argv", [
    ["--from", "yolov3-tiny", "--classes", "3"],
    ["--from", "yolov2-tiny", "--classes", "3"],
    ["--from", "mnist", "--classes", "3"],
    ["--from", "yolov3-tiny", "--classes", "12", "--size", "320x320",
     "--anchors", "10,14, 23,27, 37,58, 81,82, 135,169, 300,280"],
    ["--from", "yolov2-tiny", "--classes", "2", "--anchors", "20,20, 60,60, 120,120"],
], ids=["yolov3-tiny", "yolov2-tiny", "mnist", "yolov3-tiny-size-anchors", "yolov2-anchors"])
def test_cfg_new_output_loads_in_darknet(tmp_path, argv):
    out = tmp_path / "new.cfg"
    assert main(["cfg", "new", *argv, "-o", str(out)]) == 0
    net, expected = schedule(out)
    got = darknet_reads(out, [int(k) for k in expected])
    assert got["outputs"] == [math.prod(layer.out_shape) for layer in net.layers]
    assert got["rates"] == pytest.approx(expected, rel=1e-6)
    assert check_cfg(str(out)) == []


def test_an_inline_comment_after_steps_breaks_darknet(tmp_path):
    """The failure this guards against: the comment's commas are more steps to pj."""
    text = open(os.path.join(ROOT, "cfg", "mnist.cfg")).read()
    assert "steps=2000,2600\n" in text
    bad = tmp_path / "bad.cfg"
    bad.write_text(text.replace("steps=2000,2600\n", "steps=2000,2600  # 80%, 90%, 95%\n"))
    done = subprocess.run([sys.executable, "-c", PROBE, HERE, str(bad), "[]"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
