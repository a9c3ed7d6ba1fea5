"""The cfg grammar: Darknet's, plus CRLF, stray spaces and typed values."""

import warnings

import pytest

from darknet_py.cfg.parser import CfgWarning, parse_cfg_text
from darknet_py.errors import CfgError, NotSupportedError

from conftest import build

NET = "[net]\nbatch=2\nchannels=3\nwidth=8\nheight=8\n"


def test_sections_options_and_comments():
    cfg = parse_cfg_text("# top\n[net]\nbatch=4\n; semi\n  # indented comment\n"
                         "[conv]\nfilters = 16\nactivation=leaky\n", "a.cfg")
    assert [s.name for s in cfg.sections] == ["net", "conv"]
    assert cfg.layers[0].type == "convolutional"
    assert cfg.layers[0].int("filters") == 16
    assert cfg.layers[0].line == 6


@pytest.mark.parametrize("alias,canonical", [
    ("conv", "convolutional"), ("conn", "connected"), ("max", "maxpool"), ("avg", "avgpool"),
    ("soft", "softmax"), ("lrn", "normalization"), ("network", "net"),
    ("deconv", "deconvolutional"), ("silence", "empty"), ("local_avg", "local_avgpool")])
def test_every_alias_maps_to_its_layer_type(alias, canonical):
    head = "[network]\n" if alias != "network" else ""
    cfg = parse_cfg_text(f"{head}[{alias}]\n", "a.cfg")
    assert cfg.sections[-1].type == canonical


def test_crlf_and_spaces_are_tolerated():
    cfg = parse_cfg_text("[net]\r\nbatch = 4\r\n[convolutional]\r\nactivation = leaky \r\n"
                         "anchors = 10, 13,  16\r\n", "a.cfg")
    sec = cfg.layers[0]
    assert sec.str("activation") == "leaky"
    assert sec.float_list("anchors") == [10, 13, 16]


def test_inline_comment_ends_the_value():
    sec = parse_cfg_text("[net]\n[conv]\nactivation=leaky # why\n", "a.cfg").layers[0]
    assert sec.str("activation") == "leaky"


def test_first_section_must_be_net():
    with pytest.raises(CfgError) as e:
        parse_cfg_text("[convolutional]\nfilters=1\n", "a.cfg")
    assert str(e.value).startswith("a.cfg:1: error: first section must be [net]")


def test_option_before_any_section_is_an_error_with_its_line():
    with pytest.raises(CfgError, match=r"^a\.cfg:2: error: option 'batch=1' appears before"):
        parse_cfg_text("\nbatch=1\n[net]\n", "a.cfg")


def test_empty_file_names_the_problem():
    with pytest.raises(CfgError, match="no sections"):
        parse_cfg_text("# nothing\n", "a.cfg")


def test_unknown_section_is_reported_with_did_you_mean():
    with pytest.raises(CfgError, match=r"t\.cfg:6: error: unknown section \[convolutinal\] "
                                       r"\(did you mean \[convolutional\]\?\)"):
        build(NET + "[convolutinal]\n")


def test_typed_values_are_checked():
    with pytest.raises(CfgError, match=r"t\.cfg:7: error: \[convolutional\] option "
                                       r"'filters=32.7': expected an integer"):
        build(NET + "[convolutional]\nfilters=32.7\n")
    with pytest.raises(CfgError, match="expected an integer"):
        build(NET + "[convolutional]\nbatch_normalize=true\n")
    with pytest.raises(CfgError, match=r"expected one of .*\(did you mean 'leaky'\?\)"):
        build(NET + "[convolutional]\nactivation=leakyy\n")


def test_darknet_defaults_apply():
    conv = build(NET + "[convolutional]\n").layers[0]
    assert (conv.n, conv.size, conv.stride, conv.padding, conv.groups) == (1, 1, 1, 0, 1)
    assert conv.activation == "logistic" and not conv.batch_normalize
    pool = build(NET + "[maxpool]\nstride=2\n").layers[0]
    assert (pool.size, pool.padding) == (2, 1)


def test_pad_flag_overrides_padding():
    conv = build(NET + "[convolutional]\nsize=5\npadding=7\npad=1\n").layers[0]
    assert conv.padding == 2


def test_unused_option_warns_with_file_and_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(NET + "[convolutional]\nfilters=2\nfilterz=3\n", warn=True)
    messages = [str(w.message) for w in caught if issubclass(w.category, CfgWarning)]
    assert messages == ["t.cfg:8: warning: unused option 'filterz=3' in [convolutional]"]


def test_duplicate_key_first_wins_and_later_is_reported():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = build(NET + "[convolutional]\nfilters=2\nfilters=99\n", warn=True)
    assert net.layers[0].n == 2
    assert "line 7 sets it first" in str(caught[0].message)


def test_strict_turns_warnings_into_errors():
    with pytest.raises(CfgError, match=r"t\.cfg:7: error: unused option 'foo=1'"):
        build(NET + "[maxpool]\nfoo=1\n", strict=True)


def test_unknown_net_key_is_reported_unlike_darknet():
    with pytest.raises(CfgError, match=r"t\.cfg:2: error: unused option 'bach=2' in \[net\]"):
        build("[net]\nbach=2\nbatch=2\nchannels=1\nwidth=4\nheight=4\n[maxpool]\n",
              strict=True)


def test_empty_value_uses_default_with_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conv = build(NET + "[convolutional]\nfilters=\n", warn=True).layers[0]
    assert conv.n == 1
    assert "empty value" in str(caught[0].message)


def test_lists_trailing_comma_and_relative_indices():
    net = build(NET + "[convolutional]\nfilters=2\n[convolutional]\nfilters=3\n"
                "[route]\nlayers=-1,0,\n")
    assert net.layers[2].refs == [1, 0]
    assert net.layers[2].out_c == 5


def test_route_out_of_range_names_the_line():
    with pytest.raises(CfgError, match=r"t\.cfg:9: error: layers=-3 in \[route\] points at layer -2"):
        build(NET + "[convolutional]\nfilters=2\n[route]\nlayers=-3\n")


def test_unsupported_section_is_named_with_its_line():
    with pytest.raises(NotSupportedError,
                       match=r"t\.cfg:6: error: \[conv_lstm\] layers are not supported"):
        build(NET + "[conv_lstm]\noutput=4\n")


def test_image_layer_after_flat_layer_is_refused():
    with pytest.raises(CfgError, match="needs an image input"):
        build(NET + "[connected]\noutput=4\n[convolutional]\n")


def test_byte_order_mark_is_ignored(tmp_path):
    from darknet_py.cfg.parser import read_cfg
    path = tmp_path / "bom.cfg"
    path.write_bytes(b"\xef\xbb\xbf[net]\nbatch=1\n")
    assert read_cfg(path).net.int("batch") == 1


def test_absurd_sizes_are_a_cfg_error_not_a_crash():
    with pytest.raises(CfgError, match=r"t\.cfg:6: error: \[convolutional\] is too large"):
        build(NET + "[convolutional]\nfilters=100000000000\nsize=3\n")


def test_a_layer_may_read_only_the_keys_it_declares():
    """Layers declare their cfg_keys (what `cfg check` calls supported); a lookup of any other
    key is a programming error, so the declarations cannot fall behind the code."""
    from darknet_py.nn.layers import REGISTRY
    section = parse_cfg_text("[net]\n[maxpool]\nsize=2\ncolor=red\n", "t.cfg").layers[0]
    section.reads = REGISTRY["maxpool"].cfg_keys
    assert section.int("size") == 2 and section.int("stride", 1) == 1   # declared, set or not
    with pytest.raises(AssertionError, match="reads 'color' from \\[maxpool\\] without declaring"):
        section.str("color")
