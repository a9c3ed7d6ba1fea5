"""darknet_py.cfg.check: every cfg problem at once, with its line and its fix.

* tests/cfg_corpus/broken/*.cfg: one mistake each (made by tests/cfg_corpus/make_broken.py from
  real cfgs); line 1 says ``# expect: LINE: fragment`` (an error) or ``# expect-warning:``.
* every cfg shipped in the repo's cfg/ and Debian's /usr/share/darknet/cfg is clean, apart from
  the warnings listed (and justified) in VALID_WARNINGS.
"""

import glob
import io
import os
import re

import pytest

from darknet_py.cfg.parser import parse_cfg_text, read_cfg
from darknet_py.cfg.check import Finding, check_cfg, main_check
from darknet_py.nn.network import Network

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BROKEN = sorted(glob.glob(os.path.join(HERE, "cfg_corpus", "broken", "*.cfg")))
REPO_CFGS = sorted(glob.glob(os.path.join(ROOT, "cfg", "*.cfg")))
DEBIAN_DIR = "/usr/share/darknet/cfg"
DEBIAN_CFGS = sorted(glob.glob(os.path.join(DEBIAN_DIR, "*.cfg")))
Y3 = os.path.join(ROOT, "cfg", "yolov3-tiny.cfg")
MNIST = os.path.join(ROOT, "cfg", "mnist.cfg")

EXPECT = re.compile(r"# (expect|expect-warning): (\d+): (.+)$")


def _expectation(path):
    with open(path) as f:
        m = EXPECT.match(f.readline().rstrip("\n"))
    assert m, f"{path}: line 1 must be '# expect: LINE: fragment'"
    return ("error" if m[1] == "expect" else "warning"), int(m[2]), m[3]


# -- the broken corpus ------------------------------------------------------------------------
def test_broken_corpus_is_big_enough():
    assert len(BROKEN) >= 60
    categories = {os.path.basename(p)[4:].split("-")[0] for p in BROKEN}
    assert {"section", "option", "value", "dup", "index", "shape", "stride", "head", "anchors",
            "classes", "headbn", "batch", "minibatch", "schedule", "unsupported"} <= categories


@pytest.mark.parametrize("path", BROKEN, ids=[os.path.basename(p)[:-4] for p in BROKEN])
def test_broken_cfg_reports_its_mistake(path):
    level, line, fragment = _expectation(path)
    findings = check_cfg(path)
    hits = [f for f in findings if f.line == line and f.level == level and fragment in f.message]
    assert hits, (f"expected {level} at line {line} containing {fragment!r}; got:\n"
                  + "\n".join(map(str, findings)))
    assert all(f.path == path for f in findings)
    if level == "warning":          # a warning-only mistake must not be reported as an error
        assert not [f for f in findings if f.level == "error"], "\n".join(map(str, findings))


UNSUPPORTED = [p for p in BROKEN if "not supported by darknet_py" in _expectation(p)[2]]


@pytest.mark.parametrize("path", UNSUPPORTED, ids=[os.path.basename(p)[:-4]
                                                   for p in UNSUPPORTED])
def test_what_darknet_py_cannot_build_is_a_warning_for_darknet_only_cfgs(path):
    level, line, fragment = _expectation(path)
    assert level == "error"
    findings = check_cfg(path, darknet_only=True)
    assert [f.level for f in findings if f.line == line and fragment in f.message] == ["warning"]
    assert not [f for f in findings if f.level == "error"], "\n".join(map(str, findings))


WARNING_ONLY = [p for p in BROKEN if _expectation(p)[0] == "warning"
                and "not supported by darknet_py" not in _expectation(p)[2]]


@pytest.mark.parametrize("path", WARNING_ONLY, ids=[os.path.basename(p)[:-4]
                                                    for p in WARNING_ONLY])
def test_warning_only_cfgs_still_build(path):
    """A cfg with warnings only (and nothing darknet_py lacks) is one Network can build."""
    Network(read_cfg(path), batch=1, seed=0, warn=False)


# -- the valid corpus ---------------------------------------------------------------------------
# Valid Darknet cfgs, so no errors; these warnings are all true statements about the file.
VALID_WARNINGS = {
    # duplicate [net] keys (the first wins: batch=1, subdivisions=1)
    "yolo9000.cfg": ["duplicate option 'batch' in [net]", "duplicate option 'subdivisions'"],
    "yolov3-openimages.cfg": ["Darknet uses batch=1 and ignores batch=64",
                              "Darknet uses subdivisions=1 and ignores subdivisions=16"],
    # 'seen' is no [net] option of any Darknet
    "writing.cfg": ["unknown option 'seen' in [net]"],
    # valid Darknet layers and options that darknet_py does not implement
    "darknet9000.cfg": ["tree= in [softmax] (hierarchical softmax) is valid Darknet but not "
                        "supported by darknet_py"],
    "go.cfg": ["extra=1 in [reorg] is valid Darknet but not supported by darknet_py"],
    "go.test.cfg": ["extra=1 in [reorg] is valid Darknet but not supported by darknet_py"],
    "yolov1.cfg": ["[local] is a valid Darknet layer but is not supported by darknet_py"],
}


def _valid_ids(paths, prefix):
    return [prefix + os.path.basename(p)[:-4] for p in paths]


# Valid Darknet that darknet_py cannot build: clean only for ``cfg check --darknet-only``.
DARKNET_ONLY = {"darknet9000.cfg", "go.cfg", "go.test.cfg", "yolov1.cfg"}


def _assert_valid(path):
    findings = check_cfg(path, darknet_only=os.path.basename(path) in DARKNET_ONLY)
    errors = [f for f in findings if f.level == "error"]
    assert not errors, "\n".join(map(str, errors))
    allowed = list(VALID_WARNINGS.get(os.path.basename(path), []))
    for f in findings:
        match = next((a for a in allowed if a in f.message), None)
        assert match is not None, f"unexpected warning: {f}"
        allowed.remove(match)
    assert not allowed, f"expected warnings not reported: {allowed}"


@pytest.mark.parametrize("path", REPO_CFGS, ids=_valid_ids(REPO_CFGS, "repo-"))
def test_repo_cfgs_are_clean(path):
    _assert_valid(path)


@pytest.mark.skipif(not DEBIAN_CFGS, reason=f"{DEBIAN_DIR} is absent (apt-get install darknet)")
@pytest.mark.parametrize("path", DEBIAN_CFGS, ids=_valid_ids(DEBIAN_CFGS, "debian-"))
def test_debian_cfgs_are_clean(path):
    _assert_valid(path)


@pytest.mark.skipif(not DEBIAN_CFGS, reason=f"{DEBIAN_DIR} is absent (apt-get install darknet)")
def test_cfgs_darknet_py_cannot_build_fail_the_check_without_darknet_only():
    paths = [os.path.join(DEBIAN_DIR, name) for name in sorted(DARKNET_ONLY)]
    assert all(os.path.isfile(p) for p in paths)
    for path in paths:
        out = io.StringIO()
        assert main_check(path, out=out) == 1, out.getvalue()
        errors = [line for line in out.getvalue().splitlines() if ": error: " in line]
        assert errors and all("not supported by darknet_py" in e and "--darknet-only" in e
                              for e in errors), out.getvalue()
        out = io.StringIO()
        assert main_check(path, out=out, darknet_only=True) == 0, out.getvalue()
        with pytest.raises(Exception):
            Network(read_cfg(path), batch=1, seed=0, warn=False)


def test_alexeyab_only_features_are_info_lines_that_never_fail(tmp_path):
    text = ("[net]\nbatch=2\nwidth=16\nheight=16\nchannels=3\nmosaic=1\n"
            "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=mish\n"
            "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"
            "[reorg3d]\nstride=2\n"
            "[convolutional]\nfilters=4\nsize=1\nactivation=swish\n")
    path = tmp_path / "ab.cfg"
    path.write_text(text)
    assert check_cfg(str(path)) == []                     # nothing wrong for darknet_py
    notes = check_cfg(str(path), notes=True)
    assert [(f.line, f.level) for f in notes] == [(6, "info"), (11, "info"), (17, "info"),
                                                  (22, "info")]
    assert "'mish' is AlexeyAB's: pjreddie's Darknet prints \"Couldn't find activation\" and " \
           "uses relu" in notes[1].message
    assert "[reorg3d] is AlexeyAB's" in notes[2].message and "mosaic" in notes[0].message
    out = io.StringIO()
    assert main_check(str(path), out=out, strict=True) == 0
    lines = out.getvalue().splitlines()
    assert lines[:-1] == [str(f) for f in notes]
    assert lines[1] == f"{path}:11: info: activation=mish in [convolutional]: 'mish' is " \
                       "AlexeyAB's: pjreddie's Darknet prints \"Couldn't find activation\" " \
                       "and uses relu"
    assert lines[-1] == f"{path}: OK, no problems found (4 notes on pjreddie's Darknet)"


@pytest.mark.parametrize("key, line", [("steps", "steps=4800,5400  # 80%, 90% of it"),
                                       ("scales", "scales=.1,.1 ; ten times smaller"),
                                       ("anchors", "anchors = 10,14,  23,27 # small"),
                                       ("mask", "mask=0,1 # the first two"),
                                       ("layers", "layers=-1,-2   # both")])
def test_an_inline_comment_after_a_list_value_is_a_warning_at_its_line(tmp_path, key, line):
    text = ("[net]\nbatch=2\nwidth=32\nheight=32\nchannels=3\npolicy=steps\n"
            "steps=4800,5400\nscales=.1,.1\nmax_batches=6000\n"
            "[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n"
            "[convolutional]\nfilters=4\nsize=1\nactivation=leaky\n"
            "[route]\nlayers=-1,-2\n"
            "[convolutional]\nfilters=12\nsize=1\nactivation=linear\n"
            "[yolo]\nmask=0,1\nnum=2\nanchors=10,14,  23,27\nclasses=1\n")
    lines = text.split("\n")
    at = next(i for i, t in enumerate(lines) if t.replace(" ", "").startswith(key + "="))
    lines[at] = line
    path = tmp_path / "c.cfg"
    path.write_text("\n".join(lines))
    findings = check_cfg(str(path))
    assert [(f.line, f.level) for f in findings] == [(at + 1, "warning")], findings
    assert f"inline comment after the list {key}=" in findings[0].message
    assert "Darknet misreads it" in findings[0].message


# -- several mistakes at once; robustness ---------------------------------------------------------
def _edit(src, dst, *pairs):
    with open(src) as f:
        text = f.read()
    for old, new in pairs:
        assert old in text
        text = text.replace(old, new, 1)
    with open(dst, "w") as f:
        f.write(text)
    return str(dst)


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    cfg = _edit(Y3, tmp_path / "many.cfg", ("subdivisions=1", "subdivison=1"),
                ("[maxpool]", "[maxpol]"), ("filters=255", "filters=256"),
                ("mask = 0,1,2", "mask = 0,1,9"), ("layers = -1, 8", "layers = -1, 40"),
                ("steps=400000,450000", "steps=450000,400000"))
    findings = check_cfg(cfg)
    text = "\n".join(map(str, findings))
    for fragment in ("did you mean 'subdivisions'?", "unknown section [maxpol]",
                     "set filters=255", "uses anchor 9 but num=6", "layers=40 in [route]",
                     "must increase"):
        assert fragment in text, text
    assert [f.line for f in findings] == sorted(f.line for f in findings)


def test_never_raises_on_damaged_cfgs(tmp_path):
    with open(Y3) as f:
        lines = f.read().split("\n")
    for i in range(len(lines)):                    # every line deleted in turn
        check_cfg_text(tmp_path, "\n".join(lines[:i] + lines[i + 1:]))
    for n in range(0, len(lines), 7):              # truncated files
        check_cfg_text(tmp_path, "\n".join(lines[:n]))
    for junk in ("", "\n\n", "[", "[]", "x=1", "[net]", "[net]\nwidth=a\n[conv]\nfilters=",
                 "[net]\n[route]\nlayers=,", "[net]\nchannels=1\n[yolo]\nmask=\n",
                 "[net]\nwidth=8\nheight=8\nchannels=1\n[shortcut]\nfrom=0\n[route]\nlayers=-1"):
        check_cfg_text(tmp_path, junk)


def check_cfg_text(tmp_path, text):
    path = tmp_path / "t.cfg"
    path.write_text(text)
    findings = check_cfg(str(path))
    assert all(isinstance(f, Finding) and f.level in ("error", "warning") for f in findings)
    return findings


def test_unreadable_files_are_findings(tmp_path):
    missing = str(tmp_path / "nope.cfg")
    assert [str(f) for f in check_cfg(missing)] == \
        [f"{missing}: error: cannot read cfg file: No such file or directory"]
    binary = tmp_path / "b.cfg"
    binary.write_bytes(b"[net]\nwidth=\xff\n")
    (f,) = check_cfg(str(binary))
    assert (f.line, f.level) == (2, "error") and "not a text file" in f.message


def test_ab_and_darknet_py_agree_on_what_darknet_py_ignores(tmp_path):
    """The checker's 'not supported by darknet_py' options are exactly what Network leaves
    unused (so the DP_KEYS table in check.py follows the layers)."""
    text = ("[net]\nbatch=2\nsubdivisions=1\nwidth=8\nheight=8\nchannels=1\nmosaic_bound=1\n"
            "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=mish\ncoordconv=0\n"
            "grad_centr=0\nclip=0\ndont_update=0\n"
            "[maxpool]\nsize=2\nstride=2\nmaxpool_zero_nonmax=0\n"
            "[route]\nlayers=-1\nstream=0\n"
            "[shortcut]\nfrom=-2\nweights_type=none\n"
            "[upsample]\nstride=2\n"
            "[convolutional]\nfilters=12\nsize=1\nactivation=linear\n"
            "[yolo]\nmask=0,1\nnum=2\nanchors=1,1,2,2\nclasses=1\niou_loss=ciou\n"
            "iou_normalizer=0.07\nnew_coords=0\n")
    net = Network(parse_cfg_text(text, "ab.cfg"), seed=0, warn=False)
    unused = sorted(line for line, _ in net.diagnostics.items)
    path = tmp_path / "ab.cfg"
    path.write_text(text)
    findings = check_cfg(str(path))
    assert not [f for f in findings if f.level == "error"], "\n".join(map(str, findings))
    ignored = sorted(f.line for f in findings if "not supported by darknet_py" in f.message)
    assert unused and ignored == unused


def test_dp_keys_cover_every_layer_darknet_py_builds():
    from darknet_py.cfg.check import DP_KEYS
    from darknet_py.nn.layers import REGISTRY
    assert set(DP_KEYS) - {"net"} == set(REGISTRY)


# -- .data and .names -----------------------------------------------------------------------------
def _data(tmp_path, classes=80, names=80, extra="", trailing=""):
    names_path = tmp_path / "x.names"
    names_path.write_text("".join(f"class{i}\n" for i in range(names)) + trailing)
    data = tmp_path / "x.data"
    data.write_text((f"classes={classes}\n" if classes is not None else "")
                    + f"train=train.txt\nnames={names_path}\n{extra}")
    return str(data)


def test_data_and_names_that_match_the_cfg_are_clean(tmp_path):
    assert check_cfg(Y3, _data(tmp_path)) == []


def test_data_classes_disagreeing_with_the_cfg(tmp_path):
    data = _data(tmp_path, classes=20, names=20)
    findings = check_cfg(Y3, data)
    assert [(f.path, f.line, f.level) for f in findings] == [(data, 1, "error"), (data, 3, "error")]
    assert "classes=20 but the cfg's [yolo] (line 135) has classes=80: set classes=80 here" \
        in findings[0].message
    assert "has 20 lines but the cfg needs 80 classes" in findings[1].message


def test_names_file_with_a_missing_class(tmp_path):
    data = _data(tmp_path, names=79)
    (f,) = check_cfg(Y3, data)
    assert str(f).startswith(f"{data}:3: error: names=")
    assert "has 79 lines but the cfg needs 80 classes: give exactly one name per class" in str(f)


def test_names_file_with_trailing_empty_lines(tmp_path):
    (f,) = check_cfg(Y3, _data(tmp_path, names=80, trailing="\n\n"))
    assert "has 82 lines" in f.message and "2 empty lines; Darknet counts every line" in f.message


def test_names_checked_against_data_classes_when_the_cfg_has_no_head(tmp_path):
    cfg = tmp_path / "conv.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=1\n[convolutional]\nfilters=2\n"
                   "activation=linear\n")
    (f,) = check_cfg(str(cfg), _data(tmp_path, classes=5, names=4))
    assert "has 4 lines but classes= says 5 classes" in f.message


def test_classifier_outputs_against_data_classes(tmp_path):
    data = _data(tmp_path, classes=12, names=12)
    f, names = check_cfg(MNIST, data)
    assert (f.path, f.line, f.level) == (data, 1, "error")
    assert "classes=12 but the cfg's network outputs 10 values (its [softmax] at line 50): " \
        "set classes=10 here" in f.message
    assert (names.line, names.level) == (3, "error")
    assert "has 12 lines but the cfg needs 10 classes" in names.message


def test_repo_mnist_data_is_clean(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert check_cfg("cfg/mnist.cfg", "data/mnist.data") == []


def test_missing_names_and_data_files(tmp_path):
    data = tmp_path / "x.data"
    data.write_text("classes=80\nnames=nowhere/coco.names\n")
    (f,) = check_cfg(Y3, str(data))
    assert (f.line, f.level) == (2, "warning") and "cannot read it" in f.message
    missing = str(tmp_path / "none.data")
    (f,) = check_cfg(Y3, missing)
    assert str(f) == f"{missing}: error: cannot read data file: No such file or directory"


def test_training_and_cfg_check_read_a_repeated_data_key_alike(tmp_path):
    """pj option_find takes the first of two lines: DataCfg (training) and `cfg check` agree."""
    from darknet_py.data.datacfg import DataCfg
    data = tmp_path / "x.data"
    data.write_text("classes=2\nclasses=3\nnames=x.names\n")
    (tmp_path / "x.names").write_text("a\nb\n")
    assert DataCfg(data).int("classes", 0) == 2
    classes, dup, _ = check_cfg(MNIST, str(data))
    assert (classes.line, classes.level) == (1, "error")
    assert classes.message.startswith("classes=2 but the cfg's network outputs 10 values")
    assert (dup.line, dup.level) == (2, "warning")
    assert dup.message == "duplicate 'classes': line 1 sets it first and wins"


# -- output format and exit codes -----------------------------------------------------------------
def test_finding_format():
    f = Finding("a.cfg", 12, "error", "filters=255 but ...")
    assert str(f) == "a.cfg:12: error: filters=255 but ..."
    assert str(Finding("a.cfg", None, "error", "cannot read")) == "a.cfg: error: cannot read"
    assert f == Finding("a.cfg", 12, "error", "filters=255 but ...")


def test_main_check_clean_cfg():
    out = io.StringIO()
    assert main_check(Y3, out=out) == 0
    assert out.getvalue() == f"{Y3}: OK, no problems found\n"


def test_main_check_errors_print_every_finding_and_a_summary(tmp_path):
    cfg = _edit(Y3, tmp_path / "e.cfg", ("filters=255", "filters=256"),
                ("subdivisions=1", "subdivisions=1\nsubdivisions=2"))
    out = io.StringIO()
    assert main_check(cfg, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[:-1] == [str(f) for f in check_cfg(cfg)]
    assert lines[0] == f"{cfg}:5: warning: duplicate option 'subdivisions' in [net]: line 4 " \
                       "already sets it (Darknet uses subdivisions=1 and ignores " \
                       "subdivisions=2; delete the one you do not mean)"
    assert lines[1].startswith(f"{cfg}:128: error: filters=256 but the [yolo] at line 133")
    assert lines[-1] == f"{cfg}: 1 error, 1 warning"


def test_main_check_warnings_pass_unless_strict(tmp_path):
    cfg = _edit(Y3, tmp_path / "w.cfg", ("filters=255", "filters=255\nbatch_normalize=1"))
    out = io.StringIO()
    assert main_check(cfg, out=out) == 0
    assert out.getvalue().splitlines()[-1] == f"{cfg}: 0 errors, 1 warning"
    out = io.StringIO()
    assert main_check(cfg, strict=True, out=out) == 1
    first, summary = out.getvalue().splitlines()
    assert first.startswith(f"{cfg}:128: error: batch_normalize=1 on the [convolutional]")
    assert first.endswith("(strict mode)")
    assert summary == f"{cfg}: 1 error, 0 warnings"


def test_main_check_with_data(tmp_path):
    data = _data(tmp_path, classes=3, names=3)
    out = io.StringIO()
    assert main_check(Y3, data, out=out) == 1
    assert out.getvalue().splitlines()[-1] == f"{Y3} + {data}: 2 errors, 0 warnings"


def test_main_check_unreadable_cfg(tmp_path):
    out = io.StringIO()
    path = str(tmp_path / "missing.cfg")
    assert main_check(path, out=out) == 1
    assert out.getvalue() == (f"{path}: error: cannot read cfg file: No such file or "
                              f"directory\n{path}: 1 error, 0 warnings\n")


def test_training_options_darknet_py_lacks_are_errors_only_when_they_matter(tmp_path):
    """blur=1 or embedding_layer=-2 change AlexeyAB's training and darknet_py does not
    implement them: errors at their lines -- but mosaic=0 or focal_loss=0 ask for nothing and
    pass quietly (and max_delta=5 is implemented).  The network still builds (inference)."""
    text = ("[net]\nbatch=2\nwidth=32\nheight=32\nchannels=3\nblur=1\nmosaic=0\nflip=0\n"
            "[convolutional]\nfilters=12\nsize=1\nactivation=linear\n"
            "[yolo]\nmask=0,1\nnum=2\nanchors=1,1,2,2\nclasses=1\nmax_delta=5\nfocal_loss=0\n"
            "iou_thresh_kind=iou\nembedding_layer=-2\n")
    path = tmp_path / "ab.cfg"
    path.write_text(text)
    said = [(f.line, f.level, f.message) for f in check_cfg(str(path))
            if "does not implement" in f.message]
    assert [(line, level) for line, level, _ in said] == [(6, "error"), (21, "error")]
    assert said[0][2] == "blur=1 in [net] changes AlexeyAB's training and darknet_py does not " \
                         "implement it: remove it to train here (or set the value that asks " \
                         "for nothing); inference does not use it"
    net = Network(parse_cfg_text(text, str(path)), seed=0, warn=False)
    assert not net.diagnostics.items                        # nothing unused at build
    assert [k for k, _, _ in net.options.unimplemented] == ["blur"]
    assert [k for k, _, _ in net.layers[-1].unimplemented] == ["embedding_layer"]


def test_an_image_layer_after_a_connected_is_an_error_the_network_agrees(tmp_path):
    """AlexeyAB's crnn.train puts a [crnn] after a [connected]: Darknet reads the vector as a
    1x1xN image, darknet_py refuses to build it -- so cfg check is an error there (a warning
    with --darknet-only), at the line the network names."""
    text = ("[net]\nbatch=2\ninputs=16\n\n[connected]\noutput=8\nactivation=leaky\n\n"
            "[convolutional]\nfilters=4\nsize=1\nactivation=leaky\n\n[softmax]\n")
    path = tmp_path / "flat.cfg"
    path.write_text(text)
    errors = [(f.line, f.message) for f in check_cfg(str(path)) if f.level == "error"]
    assert len(errors) == 1 and errors[0][0] == 9 and "after a [connected]" in errors[0][1]
    assert [f.level for f in check_cfg(str(path), darknet_only=True)
            if "after a [connected]" in f.message] == ["warning"]
    with pytest.raises(Exception) as e:
        Network(parse_cfg_text(text, str(path)), warn=False)
    assert getattr(e.value, "line", None) == 9
