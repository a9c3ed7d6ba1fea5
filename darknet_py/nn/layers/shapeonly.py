"""Sections Darknet runs and darknet_py cannot yet: their shape rules only.

``cfg check`` walks a cfg through these so that every layer after one of them is still checked;
building a network refuses them (:meth:`ShapeOnly.from_cfg`).  Each rule is Darknet's
(pj:src/parser.c parse_*, ab:src/parser.c for AlexeyAB's sections).  A rule that returns None
means the output shape is not known here: later layers that depend on it are not checked.
"""

from fractions import Fraction

from ...errors import CfgError, NotSupportedError
from .base import Layer, Shape


class ShapeOnly(Layer):
    """A section type darknet_py reads but cannot compute."""

    @classmethod
    def from_cfg(cls, section, ctx):
        raise NotSupportedError(f"[{section.name}] layers are not supported by darknet_py yet",
                                section.path, section.line)


def _padding(sec, size):
    return size // 2 if sec.bool("pad") else sec.int("padding", 0, minimum=0)


class DeconvolutionalShape(ShapeOnly):
    """pj make_deconvolutional_layer: out = (in - 1) * stride + size - 2 * padding."""

    type = "deconvolutional"
    needs_image = True

    @classmethod
    def output_shape(cls, sec, inp, refs):
        n = sec.int("filters", 1, minimum=1)
        size = sec.int("size", 1, minimum=1)
        stride = sec.int("stride", 1, minimum=1)
        padding = _padding(sec, size)
        return Shape(n, (inp.h - 1) * stride + size - 2 * padding,
                     (inp.w - 1) * stride + size - 2 * padding)

    @classmethod
    def window(cls, sec):
        s = sec.int("stride", 1, minimum=1)
        return (1, Fraction(1, s), Fraction(1, s))


class LocalShape(ShapeOnly):
    """pj local_out_height: (h - (pad ? 1 : size)) / stride + 1 (pj's own quirk)."""

    type = "local"
    needs_image = True

    @classmethod
    def output_shape(cls, sec, inp, refs):
        n = sec.int("filters", 1, minimum=1)
        size = sec.int("size", 1, minimum=1)
        stride = sec.int("stride", 1, minimum=1)
        edge = 1 if sec.bool("pad") else size
        shape = Shape(n, (inp.h - edge) // stride + 1, (inp.w - edge) // stride + 1)
        if shape.h < 1 or shape.w < 1:
            raise CfgError(f"size={size} in [{sec.name}] does not fit the {inp.w}x{inp.h} input",
                           sec.path, sec.line_of("size"))
        return shape

    @classmethod
    def window(cls, sec):
        s = sec.int("stride", 1, minimum=1)
        return (sec.int("size", 1, minimum=1), s, s)


class NormalizationShape(ShapeOnly):
    """pj's local response normalization: the input's shape."""

    type = "normalization"
    needs_image = True

    @classmethod
    def output_shape(cls, sec, inp, refs):
        sec.int("size", 5, minimum=1)
        return inp


class IsegShape(ShapeOnly):
    """pj's instance segmentation head: classes + ids input channels, same shape."""

    type = "iseg"
    needs_image = True

    @classmethod
    def output_shape(cls, sec, inp, refs):
        want = sec.int("classes", 20) + sec.int("ids", 32)
        if inp.c != want:
            raise CfgError(f"[{sec.name}] expects classes+ids = {want} input channels but gets "
                           f"{inp.c}: set filters={want} in the layer before it", sec.path,
                           sec.line)
        return inp


class UnknownShape(ShapeOnly):
    """AlexeyAB sections whose shape rule darknet_py does not model."""

    @classmethod
    def output_shape(cls, sec, inp, refs):
        return None


class ConvLstmShape(UnknownShape):
    type = "conv_lstm"


class HistoryShape(UnknownShape):
    type = "history"


SHAPE_ONLY = {cls.type: cls for cls in (
    DeconvolutionalShape, LocalShape, NormalizationShape, IsegShape, ConvLstmShape,
    HistoryShape)}
