"""Property-based robustness tests for the cfg parser and the network builder.

Junk cfg text (random section headers from the known names and junk names, random key=value lines
with junk values, comments, CRLF, stray spaces, a missing [net], unicode, empty values, lists with
trailing commas, negative and huge numbers) must either parse/build or raise a
``darknet_py.errors.DarknetError`` whose ``str()`` is one line, ``t.cfg:N: error: ...`` or
``t.cfg: error: ...``.  Nothing else may escape: no ValueError, ZeroDivisionError, IndexError...

Sizes that make the builder allocate (width, height, channels, filters, size, output, ...) are
capped by the strategies, so every example is cheap; keys that allocate nothing also get huge
values.  The CLI tests check that ``python -m darknet_py cfg summary BAD.cfg`` reports one line.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from darknet_py.cfg.parser import parse_cfg_text
from darknet_py.errors import DarknetError
from darknet_py.nn.network import Network

REPO = Path(__file__).resolve().parents[1]
PATH = "t.cfg"
MESSAGE = re.compile(r"^t\.cfg(?::(\d+))?: error: \S")

# Section names Darknet (pj and AlexeyAB) knows, and near misses / junk.
KNOWN_SECTIONS = [
    "net", "network", "conv", "convolutional", "deconv", "deconvolutional", "conn", "connected",
    "max", "maxpool", "avg", "avgpool", "soft", "softmax", "dropout", "route", "shortcut",
    "upsample", "yolo", "region", "detection", "iseg", "cost", "batchnorm", "crop", "reorg",
    "local", "l2norm", "logistic", "activation", "lrn", "normalization", "rnn", "gru", "lstm",
    "crnn", "reorg3d", "scale_channels", "sam", "Gaussian_yolo", "conv_lstm", "history",
    "local_avg", "local_avgpool", "contrastive", "empty", "silence", "implicit",
]
# the layer types darknet_py builds, drawn more often so that many examples get deep
BUILDABLE = ["convolutional", "connected", "maxpool", "avgpool", "softmax", "dropout", "route",
             "shortcut", "upsample", "yolo", "region", "cost", "batchnorm", "crop", "reorg",
             "reorg3d", "l2norm", "logistic", "activation"]
JUNK_SECTIONS = ["", "NET", "Net", "convolution", "conv2d", "maxpool2", "[net", "net]", "n et",
                 "gaussian_yolo", "yolo3", "\u00e9t\u00e9", "\u7f51\u7edc", "\U0001f600", "#",
                 ";", "=", "a=b", "net#", "0"]

ACTIVATIONS = ["logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu",
               "loggy", "stair", "hardtan", "lhtan", "selu", "relu6", "swish", "mish",
               "hard_mish", "gelu", "Leaky", "lreaky", "normalize_channels", "revleaky"]
COST_TYPES = ["sse", "seg", "masked", "smooth", "L1", "l1", "wgan", "SSE"]
POLICIES = ["constant", "step", "exp", "poly", "steps", "sigmoid", "random", "sgdr", "cosine"]

JUNK_VALUES = [
    "nan", "NaN", "inf", "-inf", "infinity", "1e308", "1e999", "-1e999", "0x10", "010", "1_0",
    "--1", "+3", "1.5", "-0", "3.", ".5", "1e-3", "true", "false", "yes", "none", "null",
    "\u0661\u0662", "\uff11\uff12", "\u00b2", "1,2,", ",", ",,", "1,,2", ",1", "1;2", "1 2",
    "=", "==", "a=b", "\u00e9", "\u65e5\u672c", "\x00", "\x7f", "\U0001f600", "[net]", "#", ";x",
    "1#2", "-", "+", "e", "1e", "99999999999999999999999999999999", "-99999999999999999999",
    "9" * 5000,
]
JUNK_KEYS = ["", "x", "Filters", "FILTERS", "filter", "fil ters", "activation ", "a=b", "=",
             "\u00e9", "\U0001f600", "0", "-1", "#", "[", "]", "layers ", "from\t"]


def ints(lo, hi):
    return st.integers(lo, hi).map(str)


def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_subnormal=False).map(lambda v: repr(round(v, 3)))


def int_list(lo, hi, min_size=0, max_size=4):
    return st.tuples(st.lists(st.integers(lo, hi), min_size=min_size, max_size=max_size),
                     st.sampled_from(["", "", ",", ",,"])).map(
        lambda t: ",".join(map(str, t[0])) + t[1])


def float_list(lo=-100, hi=100, min_size=0, max_size=8):
    return st.tuples(st.lists(st.floats(lo, hi, allow_nan=False, allow_subnormal=False), min_size=min_size,
                              max_size=max_size),
                     st.sampled_from(["", "", ","])).map(
        lambda t: ",".join(repr(round(v, 3)) for v in t[0]) + t[1])


def weighted(*pairs):
    """one_of with integer weights: weighted((3, a), (1, b)) draws a three times as often."""
    return st.one_of(*[s for w, s in pairs for _ in range(w)])


huge = st.one_of(st.integers(-(10 ** 30), 10 ** 30), st.integers(-(2 ** 63), 2 ** 64)).map(str)
any_float = st.floats(allow_nan=True, allow_infinity=True,
                      allow_subnormal=False).map(repr)
junk_text = st.text(max_size=10)
junk_value = st.one_of(st.sampled_from(JUNK_VALUES), junk_text, huge, any_float,
                       ints(-5, 5), int_list(-5, 5), float_list())
small_junk = st.one_of(ints(-3, 0), st.sampled_from(["abc", "1.5", "2,", "nan", "-0", "0x2",
                                                     "\u00b2", "\uff12", "1_0", "+1", "inf"]),
                       junk_text.filter(lambda s: not s.strip().lstrip("+").isdigit()))

# Plausible values per key (chaos level 0).  Sizes that make the builder allocate are capped.
VALID = {
    "width": ints(1, 16), "height": ints(1, 16), "channels": ints(1, 4), "inputs": ints(1, 64),
    "batch": ints(1, 4), "subdivisions": ints(1, 2), "time_steps": ints(1, 2),
    "filters": ints(1, 8), "output": ints(1, 8), "size": ints(1, 5),
    "stride": st.sampled_from(["1", "1", "2", "2", "3", "-2"]), "pad": ints(0, 1),
    "padding": ints(0, 3), "groups": ints(1, 4), "group_id": ints(0, 3),
    "classes": ints(1, 3), "num": ints(1, 3), "coords": st.just("4"),
    "crop_height": ints(1, 8), "crop_width": ints(1, 8), "max": ints(1, 100),
    "extra": st.just("0"), "flatten": st.just("0"),
    "layers": st.one_of(int_list(-4, 4, min_size=1), ints(-3, -1)),
    "from": st.one_of(ints(-3, -1), ints(0, 3), int_list(-3, 3, min_size=1, max_size=2)),
    "mask": int_list(0, 3, min_size=1, max_size=3),
    "anchors": float_list(1, 50, min_size=2, max_size=6),
    "activation": st.sampled_from(ACTIVATIONS[:19]),
    "type": st.sampled_from(COST_TYPES[:5]), "policy": st.sampled_from(POLICIES[:6]),
    "steps": int_list(1, 1000, min_size=1), "scales": float_list(0.1, 10, min_size=1),
    "probability": floats(0, 0.95), "temperature": floats(0.2, 3), "scale": floats(-2, 2),
    "alpha": floats(-2, 2), "beta": floats(-2, 2), "learning_rate": floats(0, 1),
    "momentum": floats(0, 1), "decay": floats(0, 0.01),
}
# At higher chaos levels these keys still never get a huge positive value.
CAPPED_KEYS = {k for k in VALID if k not in (
    "activation", "type", "policy", "steps", "scales", "probability", "temperature", "scale",
    "alpha", "beta", "learning_rate", "momentum", "decay", "batch", "subdivisions")}
FLAG_KEYS = ["batch_normalize", "reverse", "spatial", "noloss", "noadjust", "flip",
             "truth", "stopbackward", "dontsave", "dontload", "dontloadscales", "binary", "xnor",
             "flipped", "adam", "background", "softmax", "random", "onlyforward", "rescore"]
OTHER_KEYS = ["burn_in", "power", "step", "gamma", "max_batches", "B1", "B2", "eps", "clip",
              "tree", "map", "jitter", "ignore_thresh", "truth_thresh", "thresh", "scale_x_y",
              "angle", "saturation", "exposure", "hue", "aspect", "shift", "ratio", "noobj",
              "smooth", "dot", "numload", "mosaic", "learning_rate_min", "sgdr_cycle",
              "sgdr_mult", "coord_scale", "object_scale", "noobject_scale", "class_scale",
              "bias_match", "absolute", "log", "sqrt", "seq_scales", "hidden", "kappa",
              "dilation", "stride_x", "stride_y"]
ALL_KEYS = sorted(VALID) + FLAG_KEYS + OTHER_KEYS


def value_for(key, chaos):
    """chaos 0: a plausible value; 1: sometimes a typo; 2: mostly junk (huge only if harmless)."""
    if key in VALID:
        valid = VALID[key]
    elif key in FLAG_KEYS:
        valid = st.sampled_from(["0", "0", "1"])
    else:
        valid = st.one_of(ints(0, 4), floats(0, 2))
    if chaos == 0:
        return valid
    junk = small_junk if key in CAPPED_KEYS else st.one_of(small_junk, junk_value)
    if chaos == 1:
        return weighted((6, valid), (1, junk))
    return weighted((1, valid), (2, junk))


@st.composite
def spaced(draw, text):
    """Stray spaces and tabs: Darknet deletes every blank anywhere in a line."""
    if not draw(st.booleans()):
        return text
    out = []
    for ch in text:
        if draw(st.integers(0, 5)) == 0:
            out.append(draw(st.sampled_from([" ", "\t", "  ", "\u00a0", "\u3000"])))
        out.append(ch)
    return "".join(out) + draw(st.sampled_from(["", " ", "\t", "   "]))


@st.composite
def header_line(draw, chaos, name=None):
    if name is None:
        if chaos == 0:
            name = draw(st.sampled_from(BUILDABLE))
        else:
            name = draw(weighted((4, st.sampled_from(BUILDABLE)),
                                 (2, st.sampled_from(KNOWN_SECTIONS)),
                                 (chaos, st.sampled_from(JUNK_SECTIONS)), (chaos, junk_text)))
    forms = ["[{}]"] * 6 + ["[{}] # comment", "[{}];x"]
    if chaos:
        forms += ["[{}"] * chaos + ["[{}]junk"] * chaos     # no ']'; text after the header
    line = draw(st.sampled_from(forms)).format(name)
    return draw(spaced(line))


@st.composite
def option_line(draw, chaos, keys):
    pools = [(4, st.sampled_from(keys))]
    if chaos:
        pools += [(chaos, st.sampled_from(ALL_KEYS))]
    if chaos == 2:
        pools += [(1, st.sampled_from(JUNK_KEYS)), (1, junk_text)]
    key = draw(weighted(*pools))
    value = draw(value_for(key, chaos))
    forms = ["{k}={v}"] * 8 + ["{k} = {v}", "{k}={v} # inline comment", "{k}={v};x"]
    if chaos:
        forms += ["{k}", "{k}="] * chaos                # no '=' / empty value: warnings
    if chaos == 2:
        forms += ["={v}", "=", "=="]                    # no key: an error
    line = draw(st.sampled_from(forms)).format(k=key, v=value)
    return draw(spaced(line))


@st.composite
def other_line(draw, chaos):
    pool = ["", "   ", "\t", "#", ";", "# comment", "; comment", "  # indented comment",
            "#[net]", "#\u00e9\u65e5\U0001f600", "# filters=3", "#\x0b"]
    if chaos == 2:
        pool += ["[", "]", "[]", "=", "==", "[[net]]", "]net["]
        return draw(st.one_of(st.sampled_from(pool), junk_text))
    return draw(st.sampled_from(pool))


SECTION_KEYS = {
    "net": ["batch", "subdivisions", "width", "height", "channels", "inputs", "learning_rate",
            "momentum", "decay", "policy", "steps", "scales", "max_batches", "time_steps",
            "burn_in", "adam", "angle", "mosaic"],
    "convolutional": ["filters", "size", "stride", "pad", "padding", "groups", "activation",
                      "batch_normalize"],
    "connected": ["output", "activation", "batch_normalize"],
    "maxpool": ["size", "stride", "padding"],
    "avgpool": ["stopbackward", "dontload"],
    "batchnorm": ["dontloadscales"],
    "l2norm": ["truth"],
    "logistic": ["truth"],
    "route": ["layers", "layers", "groups", "group_id"],
    "shortcut": ["from", "from", "activation", "alpha", "beta"],
    "upsample": ["stride", "scale"],
    "softmax": ["groups", "temperature", "spatial", "noloss"],
    "dropout": ["probability"],
    "cost": ["type", "scale", "ratio", "noobj", "thresh"],
    "crop": ["crop_height", "crop_width", "flip", "noadjust", "angle"],
    "reorg": ["stride", "reverse", "flatten", "extra"],
    "reorg3d": ["stride", "reverse"],
    "yolo": ["classes", "num", "mask", "anchors", "jitter", "ignore_thresh"],
    "region": ["classes", "num", "coords", "anchors", "softmax"],
    "activation": ["activation"],
}


@st.composite
def section_block(draw, chaos, index=0):
    header = draw(header_line(chaos))
    stripped = "".join(header.split())
    inner = stripped[1:stripped.find("]")] if "]" in stripped else ""
    keys = SECTION_KEYS.get(inner, ALL_KEYS)
    lines = [header]
    required = {"route": "layers", "shortcut": "from"}.get(inner)
    if required and draw(st.sampled_from([True] * 9 + [False])):
        if index and draw(st.sampled_from([True] * 3 + [False])):
            # indices of earlier layers (absolute or relative), as real cfgs use them
            refs = st.integers(-index, index - 1)
            value = ",".join(map(str, draw(st.lists(refs, min_size=1, max_size=3))))
        else:
            value = draw(value_for(required, chaos))
        lines.append(f"{required}={value}")
    for _ in range(draw(st.integers(0, 5))):
        lines.append(draw(weighted((3, option_line(chaos, keys)), (1, other_line(chaos)))))
    return lines


@st.composite
def net_block(draw, chaos):
    """A [net] section, mostly sane, so that many examples reach the layer builders."""
    name = draw(st.sampled_from(["net", "net", "net", "network"]))
    lines = [draw(spaced(f"[{name}]"))]
    for key in ("batch", "channels", "width", "height"):
        if chaos == 0 or draw(st.sampled_from([True] * (12 - 4 * chaos) + [False])):
            lines.append(f"{key}={draw(value_for(key, max(0, chaos - 1)))}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(weighted((2, option_line(chaos, SECTION_KEYS["net"])),
                                   (1, other_line(chaos)))))
    return lines


@st.composite
def cfg_text(draw):
    chaos = draw(st.sampled_from([0, 0, 1, 1, 2]))
    lines = []
    if chaos == 2 and draw(st.booleans()):          # junk before [net]
        lines.append(draw(st.one_of(other_line(chaos), option_line(chaos, ALL_KEYS))))
    if chaos < 2 or draw(st.sampled_from([True] * 4 + [False])):    # [net] mostly present
        lines += draw(net_block(chaos))
    for index in range(draw(st.integers(0 if chaos == 2 else 1, 6))):
        lines += draw(section_block(chaos, index))
    ending = draw(st.sampled_from(["\n", "\n", "\r\n", "\r", "mixed"]))
    if ending == "mixed":
        out = "".join(line + draw(st.sampled_from(["\n", "\r\n", "\r"])) for line in lines)
    else:
        out = ending.join(lines) + draw(st.sampled_from(["", ending]))
    if chaos == 2 and draw(st.sampled_from([False] * 9 + [True])):
        out = "\ufeff" + out                         # a UTF-8 byte-order mark
    return out


def check_error(err, text):
    """A DarknetError prints as one line naming the file (and a line inside the text)."""
    msg = str(err)
    assert "\n" not in msg and "\r" not in msg, repr(msg)
    m = MESSAGE.match(msg)
    assert m, f"bad error message: {msg!r}"
    if m.group(1) is not None:
        n = int(m.group(1))
        assert 1 <= n <= max(1, text.count("\n") + 1, len(text.splitlines())), (n, msg)


def parse_and_build(text, strict=False):
    """Parse and build; returns the network or None; a DarknetError is checked and swallowed."""
    try:
        cfg = parse_cfg_text(text, PATH)
    except DarknetError as e:
        check_error(e, text)
        return None
    try:
        return Network(cfg, seed=0, warn=False, strict=strict)
    except DarknetError as e:
        check_error(e, text)
        return None


# no "explain" phase: it is slow and only re-words a failure that is already reported
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
FUZZ = settings(max_examples=400, deadline=None, phases=PHASES,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(text=cfg_text(), strict=st.booleans())
# regression: route groups=4 over a 3-channel 2x2 map gave out_c = 0, and the [connected] after
# it divided by zero while building
@example(text="[net]\nbatch=2\nchannels=3\nwidth=2\nheight=2\n[dropout]\n"
              "[route]\nlayers=0\ngroups=4\n[connected]\noutput=2\n", strict=False)
def test_junk_cfg_parses_builds_or_raises_darknet_error(text, strict):
    parse_and_build(text, strict)


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text_parses_or_raises_darknet_error(text):
    parse_and_build(text)


@FUZZ
@given(text=st.builds(lambda a, b: a + b,
                      st.sampled_from(["[net]\nwidth=4\nheight=4\nchannels=2\n", "[net]\n", ""]),
                      st.text(alphabet=st.sampled_from(list("[]=#;,.-+ \t\r\n0123456789abcnet_")),
                              max_size=200)))
def test_punctuation_soup_parses_or_raises_darknet_error(text):
    parse_and_build(text)


@settings(max_examples=150, deadline=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=cfg_text())
# regression: a route whose groups do not divide the channels built, then forward failed
@example(text="[net]\nbatch=2\nchannels=3\nwidth=2\nheight=2\n[dropout]\n"
              "[route]\nlayers=0\ngroups=2\n")
# regression: a pj [reorg] with channels not divisible by stride^2 built, then forward failed
@example(text="[net]\nbatch=2\nchannels=3\nwidth=4\nheight=4\n[reorg]\nstride=2\n")
# truth=1 makes a layer's output the truth of later loss layers; here it has the wrong size
@example(text="[net]\nbatch=1\nchannels=1\nwidth=1\nheight=1\n[l2norm]\ntruth=1\n"
              "[convolutional]\nfilters=2\n[cost]\n")
def test_networks_that_build_also_run(text):
    """A cfg that builds must also run forward (inference and training): whatever the builder
    accepts, the layers must handle; a refusal is a DarknetError (e.g. training a [yolo])."""
    net = parse_and_build(text)
    if net is None:
        return
    x = np.random.default_rng(0).standard_normal((2,) + tuple(net.input_shape))
    with np.errstate(all="ignore"):
        for train in (False, True):
            try:
                net.forward(x, train=train)
            except DarknetError as e:
                check_error(e, text)


@settings(max_examples=60, deadline=None, phases=PHASES)
@given(c=st.integers(1, 6), hw=st.integers(1, 3), groups=st.integers(1, 4),
       group_id=st.integers(0, 3), after=st.sampled_from(["", "[connected]\noutput=2\n",
                                                           "[convolutional]\nfilters=2\n",
                                                           "[softmax]\n"]))
def test_route_groups_build_or_refuse(c, hw, groups, group_id, after):
    """[route] groups=G group_id=g (AlexeyAB's CSP split): any combination either builds a
    network that runs, with the documented channel slice, or is refused with a DarknetError."""
    text = (f"[net]\nbatch=2\nchannels={c}\nwidth={hw}\nheight={hw}\n[activation]\n"
            f"[route]\nlayers=0\ngroups={groups}\ngroup_id={group_id}\n{after}")
    net = parse_and_build(text)
    if net is None:
        return
    x = np.random.default_rng(0).standard_normal((2, c, hw, hw)).astype(np.float32)
    net.forward(x, train=True)
    route = net.layers[1].output.reshape(2, -1)
    part = c * hw * hw // groups
    np.testing.assert_array_equal(route, x.reshape(2, -1)[:, group_id * part:(group_id + 1) * part])


def test_forward_with_wrong_sized_input_or_truth_is_a_darknet_error():
    """A wrong input shape is a one-line DarknetError; a wrong truth shape must be one too."""
    net = Network(parse_cfg_text("[net]\nbatch=2\nchannels=1\nwidth=2\nheight=2\n"
                                 "[connected]\noutput=3\n[softmax]\n", PATH), seed=0, warn=False)
    with pytest.raises(DarknetError):
        net.forward(np.zeros((2, 1, 3, 3)))
    with pytest.raises(DarknetError):
        net.forward(np.zeros((2, 1, 2, 2)), truth=np.zeros((2, 4)))


# -- deterministic checks of the error format ------------------------------------------------

@pytest.mark.parametrize("text, line", [
    ("filters=3\n[net]\n", 1),
    ("[net]\r\nbatch=2\r\nwidth=4\r\nheight=4\r\nchannels=1\r\n\r\n[convolutional]\r\n"
     "filters=abc\r\n", 8),
    ("# c\n\n[net]\nbatch=1\nwidth=4\nheight=4\nchannels=1\n[convoluted]\n", 8),
    ("[net]\nbatch=1\nwidth=4\nheight=4\nchannels=1\n[route]\nlayers=1,\n", 7),
    ("[net]\nbatch=1\nwidth=4\nheight=4\nchannels=1\n[maxpool]\nsize=9\nstride=1\npadding=0\n",
     7),                                             # the size= that does not fit
    ("[net]\nbatch=1\nwidth=4\nheight=4\nchannels=1\n[net]\n", 6),
    ("[net]\nbatch=0\n", 2),
    ("[net\nbatch=1\n", 1),
])
def test_error_names_the_line(text, line):
    with pytest.raises(DarknetError) as info:
        Network(parse_cfg_text(text, PATH), seed=0, warn=False)
    msg = str(info.value)
    assert msg.startswith(f"{PATH}:{line}: error: "), msg
    assert "\n" not in msg


@pytest.mark.parametrize("sep", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_line_numbers_count_newlines_only(sep):
    """Darknet reads lines with fgetl (split at '\\n' only).  Characters that Python's
    str.splitlines() also treats as line breaks (VT, FF, FS, NEL, U+2028/9), e.g. inside a
    comment, must not shift the line numbers in error messages."""
    text = f"[net]\n# a comment{sep}with an odd character\nbatch=abc\n"
    with pytest.raises(DarknetError) as info:
        Network(parse_cfg_text(text, PATH), seed=0, warn=False)
    assert str(info.value).startswith(f"{PATH}:3: error: "), str(info.value)


# -- the command line ------------------------------------------------------------------------

BAD_CFGS = {
    "unknown section": ("[net]\nbatch=1\nwidth=8\nheight=8\nchannels=3\n\n[convolutionl]\n"
                        "filters=4\n", 7),
    "bad integer, CRLF": ("[net]\r\nbatch=1\r\nwidth=8\r\nheight=8\r\nchannels=3\r\n\r\n"
                          "[convolutional]\r\nfilters=4\r\nsize=three\r\n", 9),
    "route to a later layer": ("[net]\nbatch=1\nwidth=8\nheight=8\nchannels=3\n"
                               "[convolutional]\nfilters=2\nactivation=leaky\n"
                               "[route]\nlayers=0,5\n", 10),
    "option before [net], unicode": ("# r\u00e9seau\nwidth=8\n[net]\n", 2),
}


@pytest.mark.parametrize("case", list(BAD_CFGS))
def test_cli_cfg_summary_bad_cfg_is_one_line(case, tmp_path):
    text, line = BAD_CFGS[case]
    cfg = tmp_path / "BAD.cfg"
    cfg.write_bytes(text.encode("utf-8"))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "darknet_py", "cfg", "summary", str(cfg)],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert f"{cfg}:{line}: error: " in lines[0], lines[0]
    assert proc.stdout == ""
