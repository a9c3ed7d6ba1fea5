"""Regenerate ``tests/cfg_corpus/broken/*.cfg``: copies of real cfgs with one mistake each.

    python tests/cfg_corpus/make_broken.py        # from the repository root

Each case names a base cfg, the edits that make the mistake and what ``darknet_py check`` must
say about it.  The first line of every generated file is ``# expect: LINE: fragment`` (or
``# expect-warning:``): LINE counts that comment as line 1 and is, unless a case says otherwise,
the line the edit wrote; the fragment must appear in the message (it includes the fix).
tests/test_check.py reads the files only; this script is how they were made.

Bases: the repo's cfg/yolov3-tiny.cfg, cfg/yolov2-tiny.cfg (identical to Debian's) and
cfg/mnist.cfg, and Debian's /usr/share/darknet/cfg/tiny.cfg, alexnet.cfg and yolov3.cfg (package
darknet).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "cfg_corpus", "broken")
BASES = {
    "y3": os.path.join(ROOT, "cfg", "yolov3-tiny.cfg"),
    "y2": os.path.join(ROOT, "cfg", "yolov2-tiny.cfg"),
    "mnist": os.path.join(ROOT, "cfg", "mnist.cfg"),
    "tiny": "/usr/share/darknet/cfg/tiny.cfg",
    "alexnet": "/usr/share/darknet/cfg/alexnet.cfg",
    "yolov3": "/usr/share/darknet/cfg/yolov3.cfg",
}


def _key(line):
    return "".join(line.split())


def _find(lines, text, n):
    hits = [i for i, l in enumerate(lines) if _key(l) == _key(text)]
    if len(hits) < n:
        raise SystemExit(f"'{text}' occurs {len(hits)} times, wanted #{n}")
    return hits[n - 1]


def S(old, new, n=1):
    """Replace the n-th line equal to ``old`` (spaces ignored) by ``new``."""
    def edit(lines):
        i = _find(lines, old, n)
        lines[i] = new
        return i
    return edit


def I(after, text, n=1, mark=0):
    """Insert ``text`` (lines) after the n-th line equal to ``after``; marks its line ``mark``."""
    def edit(lines):
        i = _find(lines, after, n) + 1
        lines[i:i] = text.split("\n")
        return i + mark
    return edit


def A(text, mark=0):
    """Append ``text`` (lines) at the end of the file; marks its line ``mark``."""
    def edit(lines):
        while lines and lines[-1] == "":
            lines.pop()
        i = len(lines)
        lines.extend(text.split("\n") + [""])
        return i + mark
    return edit


def D(old, n=1):
    """Delete the n-th line equal to ``old``."""
    def edit(lines):
        del lines[_find(lines, old, n)]
        return None
    return edit


# (name, base, edits, level, fragment, at) -- at: None = the line the edit wrote, or
# (text, n): the n-th line equal to text in the edited file
CASES = [
    # -- unknown sections ------------------------------------------------------------------
    ("section-typo-maxpool", "y3", [S("[maxpool]", "[maxpol]")], "error",
     "unknown section [maxpol] (did you mean [maxpool]?)", None),
    ("section-typo-convolutional", "mnist", [S("[convolutional]", "[convolution]", 2)], "error",
     "unknown section [convolution] (did you mean [convolutional]?)", None),
    ("section-typo-region", "y2", [S("[region]", "[regoin]")], "error",
     "unknown section [regoin] (did you mean [region]?)", None),
    ("section-capital-softmax", "tiny", [S("[softmax]", "[Softmax]")], "error",
     "unknown section [Softmax] (did you mean [softmax]?)", None),
    ("section-typo-upsample", "y3", [S("[upsample]", "[upsampling]")], "error",
     "unknown section [upsampling] (did you mean [upsample]?)", None),
    ("section-no-closing-bracket", "y3", [S("[convolutional]", "[convolutional", 3)], "error",
     "has no closing ']': write [convolutional]", None),
    ("section-net-not-first", "mnist", [S("[net]", "[nett]")], "error",
     "the first section must be [net] or [network], found [nett] (did you mean [net]?)", None),
    # -- unknown options -------------------------------------------------------------------
    ("option-typo-filters", "y3", [S("filters=255", "filter=255")], "error",
     "unknown option 'filter' in [convolutional] (did you mean 'filters'? 'filters' is not set, "
     "so Darknet uses its default): rename it to filters=255", None),
    ("option-typo-subdivisions", "mnist", [S("subdivisions=1", "subdivision=1")], "error",
     "did you mean 'subdivisions'?", None),
    ("option-typo-activation", "tiny", [S("activation=leaky", "activaton=leaky", 4)], "error",
     "unknown option 'activaton' in [convolutional] (did you mean 'activation'?", None),
    ("option-typo-anchors", "y2", [S("anchors =  0.57273, 0.677385, 1.87446, 2.06253, 3.33843, "
                                     "5.47434, 7.88282, 3.52778, 9.77052, 9.16828",
                                     "anchor = 0.57273,0.677385,1.87446,2.06253,3.33843,5.47434,"
                                     "7.88282,3.52778,9.77052,9.16828")], "error",
     "did you mean 'anchors'?", None),
    ("option-typo-layers", "y3", [S("layers = -4", "layer = -4")], "error",
     "did you mean 'layers'? 'layers' is not set", None),
    ("option-typo-stride", "mnist", [S("stride=2", "strides=2", 2)], "error",
     "rename it to stride=2", None),
    ("option-case-batch-normalize", "tiny", [S("batch_normalize=1", "Batch_normalize=1", 3)],
     "error", "did you mean 'batch_normalize'?", None),
    ("option-wrong-section-mask", "y3", [I("filters=255", "mask=0,1,2")], "warning",
     "option 'mask' is not read by [convolutional] (it is an option of [yolo])", None),
    ("option-unknown-net-key", "mnist", [I("max_batches=3000", "seen=0")], "warning",
     "unknown option 'seen' in [net]; Darknet ignores it", None),
    ("option-typo-already-set", "y2", [I("filters=425", "filter=425")], "warning",
     "unknown option 'filter' in [convolutional] (did you mean 'filters'? it is already set on "
     "line", None),
    # -- values: type and range ------------------------------------------------------------
    ("value-float-filters", "mnist", [S("filters=16", "filters=16.5")], "error",
     "filters=16.5 in [convolutional]: expected an integer (Darknet's atoi would read 16)", None),
    ("value-size-zero", "y3", [S("size=3", "size=0", 5)], "error",
     "size=0 in [convolutional] must be >= 1", None),
    ("value-stride-zero", "tiny", [S("stride=1", "stride=0", 2)], "error",
     "stride=0 in [convolutional] must be >= 1", None),
    ("value-filters-zero", "y2", [S("filters=16", "filters=0")], "error",
     "filters=0 in [convolutional] must be >= 1", None),
    ("value-bool-true", "mnist", [S("batch_normalize=1", "batch_normalize=true")], "error",
     "batch_normalize=true in [convolutional]: expected 0 or 1", None),
    ("value-ignore-thresh-range", "y3", [S("ignore_thresh = .7", "ignore_thresh = 7")], "error",
     "ignore_thresh=7 in [yolo] must be in [0, 1]", None),
    ("value-momentum-range", "mnist", [S("momentum=0.9", "momentum=9")], "error",
     "momentum=9 must be in [0, 1) (usually 0.9)", None),
    ("value-learning-rate-text", "mnist", [S("learning_rate=0.01", "learning_rate=0.01x")],
     "error", "learning_rate=0.01x in [net]: expected a number", None),
    ("value-dropout-probability", "mnist", [I("activation=leaky", "\n[dropout]\nprobability=1.5",
                                              3, mark=2)], "error",
     "probability=1.5 in [dropout] must be in [0, 1)", None),
    ("value-activation-typo", "y3", [S("activation=leaky", "activation=leakyrelu", 3)], "error",
     "unknown activation (did you mean 'leaky'?", None),
    ("value-policy-typo", "mnist", [S("policy=steps", "policy=stepz")], "error",
     "policy=stepz in [net]: expected one of constant, step, exp, poly, steps, sigmoid, "
     "random, sgdr (did you mean 'step'?); Darknet falls back to constant", None),
    ("value-upsample-stride-zero", "y3", [S("stride=2", "stride=0", 6)], "error",
     "stride=0 in [upsample]: use stride=2", None),
    ("value-width-negative", "y3", [S("width=416", "width=-416")], "error",
     "width=-416 in [net] must be >= 0", None),
    ("value-groups-not-dividing", "tiny", [I("filters=16", "groups=3")], "error",
     "groups=3 in [convolutional] must divide both the input channels (3) and filters (16)",
     None),
    ("value-connected-output-zero", "mnist", [S("output=10", "output=0")], "error",
     "output=0 in [connected] must be >= 1", None),
    ("value-classes-zero", "y3", [S("classes=80", "classes=0", 2)], "error",
     "classes=0 in [yolo] must be >= 1", None),
    ("value-cost-type", "alexnet", [A("\n[cost]\ntype=sse2", mark=2)], "error",
     "type=sse2 in [cost]: expected one of sse, seg, masked, smooth, L1, wgan (did you mean "
     "'sse'?)", None),
    ("value-empty", "mnist", [S("momentum=0.9", "momentum=")], "error",
     "option 'momentum=' has no value", None),
    ("value-trailing-comma", "mnist", [S("steps=2000,2600", "steps=2000,2600,")], "warning",
     "trailing comma in steps=2000,2600,: Darknet reads an extra 0 there", None),
    ("value-inline-comment", "mnist", [S("activation=linear", "activation=linear # logits")],
     "warning", "inline comment after activation=linear: Darknet keeps it as part of the value",
     None),
    # -- duplicate keys --------------------------------------------------------------------
    ("dup-filters", "y3", [I("filters=256", "filters=128")], "warning",
     "duplicate option 'filters' in [convolutional]: line", None),
    ("dup-net-batch", "mnist", [I("subdivisions=1", "batch=32")], "warning",
     "Darknet uses batch=64 and ignores batch=32", None),
    ("dup-activation", "tiny", [I("activation=leaky", "activation=relu", 2)], "warning",
     "duplicate option 'activation' in [convolutional]", None),
    # -- route / shortcut indices ----------------------------------------------------------
    ("index-route-before-first", "y3", [S("layers = -4", "layers = -40")], "error",
     "layers=-40 in [route] points at layer -23, before the first layer: this is layer 17, so "
     "relative indices go from -17 to -1", None),
    ("index-route-forward", "y3", [S("layers = -1, 8", "layers = -1, 30")], "error",
     "layers=30 in [route] points at layer 30, which is not before this layer (layer 20)", None),
    ("index-route-self", "y3", [S("layers = -1, 8", "layers = -1, 20")], "error",
     "layers=20 in [route] points at layer 20, which is not before this layer", None),
    ("index-shortcut-before-first", "tiny", [I("activation=leaky", "\n[shortcut]\nfrom=-30", 3,
                                               mark=2)], "error",
     "from=-30 in [shortcut] points at layer -25, before the first layer", None),
    ("index-shortcut-forward", "mnist", [I("activation=leaky", "\n[shortcut]\nfrom=4", 2,
                                           mark=2)], "error",
     "from=4 in [shortcut] points at layer 4, which is not before this layer (layer 3)", None),
    ("index-route-missing-layers", "y3", [D("layers = -4")], "error",
     "[route] needs layers= (the layers to concatenate", ("[route]", 1)),
    # -- shapes ----------------------------------------------------------------------------
    ("shape-route-mismatch", "y3", [S("layers = -1, 8", "layers = -1, 6")], "error",
     "joins layer 19 (26x26x128) and layer 6 (52x52x128)", None),
    ("shape-route-mismatch-2", "y3", [S("layers = -1, 8", "layers = -1, 10")], "error",
     "which differ in size: the route's output becomes a flat vector and the [convolutional] at "
     "line", None),
    ("shape-shortcut-not-multiple", "alexnet", [I("activation=relu", "\n[shortcut]\nfrom=-3", 3,
                                                  mark=2)], "error",
     "layer 2 is 27x27x256 but the previous layer (layer 4) is 13x13x384; a shortcut adds maps of "
     "equal width and height", None),
    ("shape-shortcut-odd-size", "mnist", [I("stride=2", "\n[maxpool]\nsize=2\nstride=2\n\n"
                                            "[shortcut]\nfrom=-2", 2, mark=6)], "error",
     "layer 3 is 7x7x32 but the previous layer (layer 4) is 4x4x32", None),
    ("shape-conv-after-softmax", "mnist", [I("stride=2", "\n[softmax]", 1, mark=1)], "error",
     "[convolutional] needs an image (channels x height x width) as input, but layer 2 "
     "([softmax] at line", ("[convolutional]", 2)),
    ("shape-route-mismatch-3", "y3", [S("layers = -1, 8", "layers = -1, 4")], "error",
     "joins layer 19 (26x26x128) and layer 4 (104x104x64)", None),
    ("shape-conv-size-too-big", "mnist", [S("size=3", "size=15", 2), S("pad=1", "pad=0", 2)],
     "error", "size=15 in [convolutional] does not fit the 14x14 input", ("size=15", 1)),
    # -- width/height and the total stride -------------------------------------------------
    ("stride-width-420", "y3", [S("width=416", "width=420")], "error",
     "width=420 is not a multiple of 32, the network's total stride", None),
    ("stride-height-400", "y2", [S("height=416", "height=400")], "error",
     "use height=384 or 416", None),
    ("stride-width-600", "y2", [S("width=416", "width=600")], "error",
     "width=600 is not a multiple of 32", None),
    ("stride-height-426", "y3", [S("height=416", "height=426")], "error",
     "use height=416 or 448", None),
    # -- the conv before a detection head --------------------------------------------------
    ("head-yolo-filters-256", "y3", [S("filters=255", "filters=256")], "error",
     "filters=256 but the [yolo] at line 133 needs len(mask)*(classes+5) = 3*(80+5) = 255: set "
     "filters=255", None),
    ("head-yolo-filters-voc", "y3", [S("filters=255", "filters=75", 2)], "error",
     "needs len(mask)*(classes+5) = 3*(80+5) = 255: set filters=255", None),
    ("head-yolo-classes-changed", "y3", [S("classes=80", "classes=3", 1),
                                         S("classes=80", "classes=3", 1)], "error",
     "filters=255 but the [yolo] at line 133 needs len(mask)*(classes+5) = 3*(3+5) = 24: set "
     "filters=24", ("filters=255", 1)),
    ("head-region-filters", "y2", [S("filters=425", "filters=125")], "error",
     "needs num*(coords+1+classes) = 5*(4+1+80) = 425: set filters=425", None),
    ("head-region-classes-changed", "y2", [S("classes=80", "classes=20")], "error",
     "filters=425 but the [region] at line 123 needs num*(coords+1+classes) = 5*(4+1+20) = 125: "
     "set filters=125", ("filters=425", 1)),
    ("head-yolo-after-route", "y3", [I("activation=linear", "\n[route]\nlayers=-2", 1,
                                       mark=1)], "error",
     "[yolo] needs len(mask)*(classes+5) = 3*(80+5) = 255 input channels but layer 16 ([route] "
     "at line 131) gives 512: end the head with a [convolutional] of filters=255",
     ("[yolo]", 1)),
    # -- mask and anchors ------------------------------------------------------------------
    ("anchors-mask-out-of-range", "y3", [S("mask = 3,4,5", "mask = 3,4,6")], "error",
     "mask=3,4,6 in [yolo] uses anchor 6 but num=6 (anchors are numbered 0..5): use indices "
     "0..5", None),
    ("anchors-mask-9-anchors", "y3", [S("mask = 0,1,2", "mask = 6,7,8")], "error",
     "uses anchor 6 but num=6", None),
    ("anchors-mask-negative", "y3", [S("mask = 0,1,2", "mask = -1,1,2")], "error",
     "uses anchor -1 but num=6", None),
    ("anchors-missing-pair", "y3", [S("anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  "
                                      "344,319", "anchors = 10,14,  23,27,  37,58,  81,82,  "
                                      "135,169", 2)], "error",
     "anchors in [yolo] has 10 values but num=6 needs 2*num = 12 (w,h pairs): set num=5 or "
     "give 12 values", None),
    ("anchors-odd-count", "y2", [S("anchors =  0.57273, 0.677385, 1.87446, 2.06253, 3.33843, "
                                   "5.47434, 7.88282, 3.52778, 9.77052, 9.16828",
                                   "anchors =  0.57273, 0.677385, 1.87446, 2.06253, 3.33843, "
                                   "5.47434, 7.88282, 3.52778, 9.77052")], "error",
     "has 9 values but num=5 needs 2*num = 10 (w,h pairs): an odd count means a width or "
     "height is missing", None),
    ("anchors-extra-pair", "y3", [S("anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  "
                                    "344,319", "anchors = 10,14,  23,27,  37,58,  81,82,  "
                                    "135,169,  344,319,  400,400")], "error",
     "has 14 values but num=6 needs 2*num = 12 (w,h pairs): set num=7", None),
    ("anchors-negative", "y3", [S("anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  "
                                  "344,319", "anchors = 10,14,  23,27,  37,58,  81,82,  "
                                  "135,-169,  344,319")], "error",
     "anchors in [yolo] must all be > 0", None),
    # -- classes across heads --------------------------------------------------------------
    ("classes-second-yolo", "y3", [S("classes=80", "classes=8", 2)], "error",
     "classes=8 in [yolo] but the [yolo] at line 133 has classes=80: every detection head must "
     "use the same classes; set classes=80", None),
    ("classes-first-yolo", "y3", [S("classes=80", "classes=20", 1)], "error",
     "classes=20 in [yolo] but the [yolo] at line 175 has classes=80", None),
    ("classes-middle-of-three", "yolov3", [S("classes=80", "classes=81", 2)], "error",
     "classes=81 in [yolo] but the [yolo] at line 608 has classes=80: every detection head "
     "must use the same classes; set classes=80", None),
    # -- batch norm / activation in the head conv (warnings) -------------------------------
    ("headbn-yolo-batch-normalize", "y3", [I("filters=255", "batch_normalize=1")],
     "warning", "batch_normalize=1 on the [convolutional] that feeds the [yolo] at line 134: "
     "Darknet's detection heads expect raw outputs (batch_normalize=0, activation=linear); set "
     "batch_normalize=0", None),
    ("headbn-yolo-leaky", "y3", [S("activation=linear", "activation=leaky", 2)], "warning",
     "activation=leaky on the [convolutional] that feeds the [yolo] at line 175", None),
    ("headbn-region-logistic", "y2", [S("activation=linear", "activation=logistic")], "warning",
     "activation=logistic on the [convolutional] that feeds the [region] at line 123", None),
    ("headbn-region-batch-normalize", "y2", [I("filters=425", "batch_normalize=1")], "warning",
     "batch_normalize=1 on the [convolutional] that feeds the [region]", None),
    ("headbn-no-activation", "y3", [D("activation=linear", 1)], "warning",
     "no activation= (Darknet's default is logistic) on the [convolutional] that feeds the "
     "[yolo]", ("[convolutional]", 10)),
    # -- batch and subdivisions ------------------------------------------------------------
    ("batch-not-multiple", "mnist", [S("subdivisions=1", "subdivisions=3")], "warning",
     "batch=64 is not a multiple of subdivisions=3: each mini-batch has 21 images and an update "
     "uses 63, not 64; set batch=63", None),
    ("batch-not-multiple-tiny", "tiny", [S("subdivisions=1", "subdivisions=5")], "warning",
     "batch=128 is not a multiple of subdivisions=5", None),
    ("batch-smaller-than-subdivisions", "mnist", [S("subdivisions=1", "subdivisions=128")],
     "error", "subdivisions=128 is larger than batch=64: the mini-batch (batch/subdivisions) "
     "would be empty", None),
    ("batch-zero", "mnist", [S("batch=64", "batch=0")], "error",
     "batch=0 in [net] must be >= 1", None),
    # -- mini-batch < 4 with batch norm (warnings) -----------------------------------------
    ("minibatch-mnist-2", "mnist", [S("subdivisions=1", "subdivisions=32")], "warning",
     "mini-batch = batch/subdivisions = 64/32 = 2 images with batch norm", None),
    ("minibatch-tiny-2", "tiny", [S("subdivisions=1", "subdivisions=64")], "warning",
     "use subdivisions <= 32 (a mini-batch of at least 4)", None),
    ("minibatch-y3-1", "y3", [S("batch=1", "batch=16"), S("subdivisions=1", "subdivisions=16")],
     "warning", "mini-batch = batch/subdivisions = 16/16 = 1 image with batch norm", None),
    # -- learning-rate schedule ------------------------------------------------------------
    ("schedule-max-batches-below-step", "mnist", [S("max_batches=3000", "max_batches=2500")],
     "error", "max_batches=2500 is smaller than the last of steps (2600), which is never "
     "reached", None),
    ("schedule-max-batches-below-burn-in", "y3", [S("max_batches = 500200",
                                                    "max_batches = 500")], "error",
     "max_batches=500 is smaller than burn_in=1000: training ends during the burn-in", None),
    ("schedule-steps-decreasing", "mnist", [S("steps=2000,2600", "steps=2600,2000")], "error",
     "steps=2600,2000 must increase: 2000 comes after 2600", None),
    ("schedule-steps-decreasing-y2", "y2", [S("steps=400000,450000", "steps=450000,40000")],
     "error", "must increase: 40000 comes after 450000", None),
    ("schedule-no-scales", "mnist", [D("scales=.1,.1")], "error",
     "policy=steps needs scales=", ("policy=steps", 1)),
    ("schedule-no-steps", "y2", [D("steps=400000,450000")], "error",
     "policy=steps needs steps=", ("policy=steps", 1)),
    ("schedule-fewer-scales", "y3", [S("scales=.1,.1", "scales=.1")], "error",
     "scales has 1 values but steps has 2: give one scale per step", None),
    ("schedule-more-scales", "mnist", [S("scales=.1,.1", "scales=.1,.1,.1")], "warning",
     "scales has 3 values but steps has 2: the extra scales are ignored", None),
    ("schedule-steps-without-policy", "mnist", [S("policy=steps", "policy=poly")], "warning",
     "steps= is ignored because policy=poly; set policy=steps", ("steps=2000,2600", 1)),
    # -- valid Darknet that darknet_py cannot build: errors (warnings with --darknet-only) ----
    ("unsupported-xnor", "tiny", [I("filters=32", "xnor=1")], "error",
     "xnor=1 in [convolutional] is valid Darknet but not supported by darknet_py", None),
    ("unsupported-antialiasing", "y3", [I("filters=16", "antialiasing=1")], "error",
     "antialiasing=1 in [convolutional] (AlexeyAB) is valid Darknet but not supported by "
     "darknet_py", None),
    ("unsupported-local", "mnist", [S("[convolutional]", "[local]", 2), D("batch_normalize=1", 2)],
     "error", "[local] is a valid Darknet layer but is not supported by darknet_py", None),
    ("unsupported-share-index", "y3", [I("filters=32", "share_index=2")], "error",
     "share_index=2 in [convolutional] points at layer 2, which is not before this layer", None),
    ("unsupported-binary", "tiny", [I("filters=64", "binary=1")], "error",
     "binary=1 in [convolutional] is valid Darknet but not supported by darknet_py", None),
    ("value-filters-overflow", "mnist", [S("filters=32", "filters=99999999")], "error",
     "[convolutional] would have 14,399,999,856 weights: over 2^31 - 1, where Darknet's int "
     "counts overflow", None),
    ("value-connected-output-overflow", "mnist", [S("output=10", "output=999999999")], "error",
     "[connected] would have 127,999,999,872 weights: over 2^31 - 1", None),
]


def build(name, base, edits):
    with open(BASES[base]) as f:
        lines = f.read().split("\n")
    marked = None
    for edit in edits:
        i = edit(lines)
        if i is not None:
            marked = i
    return lines, marked


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.endswith(".cfg"):
            os.remove(os.path.join(OUT, old))
    for number, (name, base, edits, level, fragment, at) in enumerate(CASES, start=1):
        lines, marked = build(name, base, edits)
        if at is not None:
            marked = _find(lines, *at)
        if marked is None:
            raise SystemExit(f"{name}: no line to expect")
        tag = "expect" if level == "error" else "expect-warning"
        text = f"# {tag}: {marked + 2}: {fragment}\n" + "\n".join(lines)
        path = os.path.join(OUT, f"{number:03d}-{name}.cfg")
        with open(path, "w") as f:
            f.write(text)
    print(f"wrote {len(CASES)} files to {os.path.relpath(OUT, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
