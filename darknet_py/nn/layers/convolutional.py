"""``[convolutional]`` (pj:src/convolutional_layer.c, ab:src/convolutional_layer.c).

forward:  out = conv(x, W) ; batch_normalize ? BN(out) (biases = beta) : out + biases ; act(out)
backward: delta *= act'(y) ; BN backward or bias_updates += sum(delta) ;
          weight_updates += delta . im2col(x)^T ; prev.delta += col2im(W^T . delta)

AlexeyAB's ``stride_x``/``stride_y`` (default ``stride``): out_w = (w + 2 pad - size)/stride_x + 1,
out_h with stride_y.  ``dilation`` (1 when size=1): taps ``dilation`` apart with padding
pad*dilation on every side (ab im2col_cpu_ext and its cuDNN descriptor), the output size
AlexeyAB's formula above, which ignores the dilation: that is the dilated convolution's size only
when 2*pad = size - 1 (pad=1 with an odd size), so any other padding is refused with dilation.

AlexeyAB's ``share_index=N`` (ab:src/parser.c parse_convolutional; N >= 0 a layer index, else
relative): the layer computes with layer N's weights, biases and batch-norm parameters -- the same
arrays (ab make_convolutional_layer's share_layer), which must have the same size, input channels,
filters and groups (ab refuses the rest) -- and stores none of them in the .weights file (ab
save/load_weights skip it).  Folding batch norm folds layer N's arrays once; the sharing layer
then has no batch norm either (ab fuse_conv_batchnorm).  Training is refused: AlexeyAB updates
the shared arrays once per sharing layer and lets the layers overwrite each other's batch
statistics between the forward and the backward, which is not a gradient of anything.
"""

import math

import numpy as np

from ..activations import ACTIVATIONS, CHANNEL_ACTIVATIONS
from ..backend import cudnn_ops
from ...errors import CfgError, NotSupportedError
from ..im2col import conv_backward_data, conv_backward_filter, conv_forward, out_size
from ..precision import convolve, layer_precision, precision_of
from .base import Layer, Shape, resolve_refs, unimplemented_in
from . import convkernel
from .batchnorm import init_batchnorm
from .epilogue import backward_epilogue, forward_epilogue, takes_half


def read_activation(section, default, channels=False):
    """The activation; ``channels``: AlexeyAB's normalize_channels* too ([convolutional])."""
    return section.choice("activation", default,
                          ACTIVATIONS + CHANNEL_ACTIVATIONS if channels else ACTIVATIONS)


class ConvolutionalLayer(Layer):
    capturable = True
    type = "convolutional"
    cfg_keys = frozenset((
        "filters size stride padding pad groups activation batch_normalize flipped dot "
        "stride_x stride_y dilation share_index"
    ).split())
    params = ("weights", "biases", "scales")
    needs_image = True

    # AlexeyAB's options that change what a convolution computes (ab:src/parser.c
    # parse_convolutional); darknet_py refuses them rather than computing something else
    unsupported = {
        "binary": (0, ""), "xnor": (0, ""),
        "antialiasing": (0, "AlexeyAB"),
    }
    #: shared weights train as AlexeyAB never meant them to (see the module docstring)
    training_unimplemented = {"share_index": None}

    @staticmethod
    def padding_of(sec, size):
        """pj parse_convolutional: ``pad=1`` overrides ``padding=`` with size/2."""
        return size // 2 if sec.bool("pad") else sec.int("padding", 0, minimum=0)

    @classmethod
    def dilation_of(cls, sec):
        """AlexeyAB's dilation (ab parse_convolutional: 1 for a 1x1 conv); with padding other
        than (size-1)/2 AlexeyAB's CPU and GPU disagree on the output, so it is refused."""
        size = sec.int("size", 1)
        dilation = sec.int("dilation", 1, minimum=1)
        if size == 1:
            return 1
        padding = cls.padding_of(sec, size)
        if dilation > 1 and 2 * padding != size - 1:
            raise CfgError(f"dilation={dilation} in [{sec.name}] needs padding (size-1)/2 (pad=1 "
                           f"with an odd size; here size={size}, padding {padding}): AlexeyAB "
                           "sizes the output as if undilated, which only that padding keeps "
                           "equal to the dilated convolution's", sec.path,
                           sec.line_of("dilation"))
        return dilation

    @classmethod
    def check_options(cls, sec):
        sec.int("filters", 1, minimum=1)
        cls.window(sec)
        cls.padding_of(sec, sec.int("size", 1))
        cls.dilation_of(sec)
        sec.int("groups", 1, minimum=1)
        cls.shared_index(sec)

    @staticmethod
    def shared_index(sec):
        """The earlier layer ``share_index`` names, or None."""
        if not sec.has("share_index"):
            return None
        return resolve_refs(sec, "share_index", "the [convolutional] whose weights to use")[0]

    @classmethod
    def output_shape(cls, sec, inp, refs):
        n = sec.int("filters", 1)
        _, sx, sy = cls.window(sec)
        size = sec.int("size", 1)
        padding = cls.padding_of(sec, size)
        groups = sec.int("groups", 1)
        if inp.c % groups or n % groups:
            raise CfgError(f"groups={groups} in [{sec.name}] must divide both the input "
                           f"channels ({inp.c}) and filters ({n})", sec.path,
                           sec.line_of("groups"))
        shape = Shape(n, out_size(inp.h, size, sy, padding), out_size(inp.w, size, sx, padding))
        if shape.h < 1 or shape.w < 1:
            raise CfgError(f"size={size} in [{sec.name}] does not fit the {inp.w}x{inp.h} input "
                           f"(padding {padding}): the output would be empty", sec.path,
                           sec.line_of("size"))
        return shape

    @classmethod
    def window(cls, sec):
        stride = sec.int("stride", 1, minimum=1)
        size = sec.int("size", 1, minimum=1)
        span = (size - 1) * max(sec.int("dilation", 1), 1) + 1 if size > 1 else 1
        return (span, sec.int("stride_x", stride, minimum=1),
                sec.int("stride_y", stride, minimum=1))

    @classmethod
    def from_cfg(cls, section, ctx):
        shared = cls.shared_index(section)
        layer = cls.build_shape(section, ctx, cls() if shared is None else SharedConvolution())
        layer.n = layer.out_c
        layer.size = section.int("size", 1)
        layer.stride = section.int("stride", 1)
        layer.stride_x = section.int("stride_x", layer.stride)
        layer.stride_y = section.int("stride_y", layer.stride)
        layer.dilation = cls.dilation_of(section)
        layer.padding = cls.padding_of(section, layer.size)
        layer.groups = section.int("groups", 1)
        layer.activation = read_activation(section, "logistic", channels=True)
        layer.batch_normalize = section.bool("batch_normalize")
        layer.flipped = section.bool("flipped")
        section.int("dot", 0)
        if shared is None:
            layer.init_params(ctx)
        else:
            layer.use_weights_of(ctx.layers[shared], section)
            layer.unimplemented = unimplemented_in(section, cls.training_unimplemented)
        return layer

    @classmethod
    def part(cls, ctx, inp, filters, size, padding, groups, activation, batch_normalize):
        """A stride-1 convolution inside another layer (pj make_convolutional_layer called by
        [crnn]), on an ``inp`` (c, h, w) image, no section of its own."""
        layer = cls()
        layer.c, layer.h, layer.w = inp
        layer.set_output(Shape(filters, out_size(inp[1], size, 1, padding),
                               out_size(inp[2], size, 1, padding)))
        layer.n, layer.size, layer.padding, layer.groups = filters, size, padding, groups
        layer.stride = layer.stride_x = layer.stride_y = layer.dilation = 1
        layer.activation, layer.batch_normalize, layer.flipped = activation, batch_normalize, False
        layer.init_params(ctx)
        return layer

    def init_params(self, ctx):
        xp = ctx.xp
        fan_in = self.size * self.size * self.c // self.groups
        shape = (self.n, self.c // self.groups, self.size, self.size)
        # pj: scale = sqrt(2/(size*size*c/groups)), weights ~ scale * N(0,1)
        w = math.sqrt(2.0 / fan_in) * ctx.rng.standard_normal(shape)
        if self.activation in CHANNEL_ACTIVATIONS:
            w = np.ones(shape)      # ab make_convolutional_layer: weights 1 for NORM_CHAN*
        self.weights = xp.asarray(w.astype(np.float32))
        self.weight_updates = xp.zeros(shape, dtype="float32")
        self.biases = xp.zeros(self.n, dtype="float32")
        self.bias_updates = xp.zeros(self.n, dtype="float32")
        if self.batch_normalize:
            init_batchnorm(self, self.n, xp)

    @property
    def _strides(self):
        """(stride_y, stride_x): AlexeyAB's stride_y/stride_x where given, else stride."""
        return getattr(self, "stride_y", self.stride), getattr(self, "stride_x", self.stride)

    @property
    def _geometry(self):
        """(stride, padding on every side, dilation) of the convolution routines: stride an
        int, or (stride_y, stride_x) when they differ; padding pad*dilation (AlexeyAB)."""
        sy, sx = self._strides
        dilation = getattr(self, "dilation", 1)
        return (sx if sx == sy else (sy, sx)), self.padding * dilation, dilation

    def forward(self, net):
        x = self.input_image(net.input)
        mp = layer_precision(precision_of(net), self)
        if convkernel.fits(self, x, mp):       # an image layer: one kernel
            self.output, self.activation_input = convkernel.forward(self, x)
            return
        stride, pad, dilation = self._geometry
        ops = cudnn_ops(x)
        what = f"layer {self.index} conv forward"
        fprop = ops and (lambda a, b, math: ops.conv_forward(
            a, b, stride, pad, self.groups, what=what, dilation=dilation, math=math,
            train=net.train))
        out = convolve(mp, fprop,
                       lambda a, b: conv_forward(a, b, stride, pad, self.groups, dilation),
                       (x, self.weights), keep_half=takes_half(self, net.train))
        self.output = forward_epilogue(self, out, net.train)

    def backward(self, net):
        x = self.input_image(net.input)
        stride, pad, dilation = self._geometry
        delta = backward_epilogue(self)
        ops = cudnn_ops(x)
        mp = layer_precision(precision_of(net), self)
        what = f"layer {self.index} conv"
        wgrad = ops and (lambda a, b, math: ops.conv_backward_filter(
            a, b, self.weights.shape, stride, pad, self.groups, what=f"{what} wgrad",
            dilation=dilation, math=math))
        self.weight_updates += convolve(
            mp, wgrad, lambda a, b: conv_backward_filter(a, b, self.size, stride, pad,
                                                         self.groups, dilation),
            (x, delta), scaled=1)
        if net.delta is not None:
            dgrad = ops and (lambda a, b, math: ops.conv_backward_data(
                a, b, x.shape, stride, pad, self.groups, what=f"{what} dgrad",
                dilation=dilation, math=math))
            dx = convolve(mp, dgrad,
                          lambda a, b: conv_backward_data(a, b, x.shape, stride, pad,
                                                          self.groups, dilation),
                          (delta, self.weights), scaled=0)
            net.delta += dx.reshape(net.delta.shape)

    def update(self, args):
        self.apply_update("biases", args, decay=False)
        if self.batch_normalize:
            self.apply_update("scales", args, decay=False)
        self.apply_update("weights", args, decay=True)

    def weight_record(self):
        if self.batch_normalize:
            return ("biases", "scales", "rolling_mean", "rolling_variance", "weights")
        return ("biases", "weights")

    def bflops(self):
        return (2.0 * self.n * self.size * self.size * (self.c // self.groups)
                * self.out_h * self.out_w) / 1e9

    def describe(self):
        if (self.stride_x, self.stride_y, self.dilation) != (self.stride,) * 2 + (1,):
            # AlexeyAB's line: size x size/stride_x(dilation)
            geometry = f"{self.size:2d} x{self.size:2d}/{self.stride_x:2d}"
            geometry += f"({self.dilation})" if self.dilation > 1 else \
                f"x{self.stride_y}" if self.stride_y != self.stride_x else ""
            return (f"conv  {self.n:5d} {geometry:<14s}"
                    f"{self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                    f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}  "
                    f"{self.bflops():5.3f} BFLOPs")
        return (f"conv  {self.n:5d} {self.size:2d} x{self.size:2d} /{self.stride:2d}  "
                f"{self.w:4d} x{self.h:4d} x{self.c:4d}   ->  "
                f"{self.out_w:4d} x{self.out_h:4d} x{self.out_c:4d}  {self.bflops():5.3f} BFLOPs")


class SharedConvolution(ConvolutionalLayer):
    """A [convolutional] with ``share_index``: its parameters are those of the layer it names
    (the same arrays, read through ``share``), none of them its own."""

    shared = ("weights", "weight_updates", "biases", "bias_updates", "scales", "scale_updates",
              "rolling_mean", "rolling_variance")

    def use_weights_of(self, other, section):
        key = "share_index"
        if not isinstance(other, ConvolutionalLayer) or isinstance(other, SharedConvolution):
            raise CfgError(f"{key}={section.str(key)} in [{section.name}] names layer "
                           f"{other.index} ({other.type}): it must be a [convolutional] with "
                           "weights of its own", section.path, section.line_of(key))
        mine = (self.size, self.c, self.n, self.groups, self.batch_normalize)
        theirs = (other.size, other.c, other.n, other.groups, other.batch_normalize)
        if mine != theirs:
            raise CfgError(f"{key}={section.str(key)} in [{section.name}]: layer {other.index} "
                           f"has size, input channels, filters, groups, batch_normalize "
                           f"{theirs}, this layer {mine}; the weights can only be shared "
                           "between equal ones (AlexeyAB's rule)", section.path,
                           section.line_of(key))
        self.share = other

    def __getattr__(self, name):
        # only called for names the instance does not hold: the shared parameters
        if name in SharedConvolution.shared and "share" in self.__dict__:
            return getattr(self.share, name)
        raise AttributeError(name)

    def register_state(self, adam=False):
        """Nothing of its own to keep: the layer it shares registers the arrays."""

    def weight_record(self):
        return ()

    def backward(self, net):
        raise NotSupportedError(f"layer {self.index} [convolutional] share_index: darknet_py "
                                "does not train layers with shared weights (inference only)",
                                self.path, self.line)

    def update(self, args):
        """Never trained (see backward)."""
