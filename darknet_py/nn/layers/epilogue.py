"""What [convolutional] and [connected] do after their linear op, and its backward: one place
for both layers (pj forward_convolutional_layer / forward_connected_layer).

forward:  batch_normalize ? BN(out) (``biases`` is BN's beta) : out + biases ; then activate
backward: delta *= act'(y) ; BN backward, or bias_updates += sum(delta) ; returns the delta of
          the linear op's output

On the GPU (float32 CuPy arrays) each line is one kernel (``nn/kernels.py``): the bias or the
inference batch norm with the activation, and the activation gradient with the bias gradient;
the same operations in the same order, so the result equals the NumPy path to float rounding.
"""

import numpy as np

from .. import kernels
from ..activations import (CHANNEL_ACTIVATIONS, NEEDS_INPUT, activate, activate_channels,
                           channels_backward, gradient)
from ..backend import on_gpu
from .batchnorm import batchnorm_backward, batchnorm_forward, inference_terms


def _fused(a):
    return on_gpu(a) and a.dtype == np.float32 and a.ndim == 4


def takes_half(layer, train):
    """Whether the epilogue can read a convolution's output as cuDNN gives it (half, or tf32's
    NHWC float32) directly, in its one kernel with the bias and the activation: without batch
    norm (folded for inference; cuDNN's training batch norm takes float32, and the inference
    one keeps its input for a backward) and AlexeyAB's channel activations.  ``train`` does
    not matter then."""
    return layer.activation not in CHANNEL_ACTIVATIONS and not layer.batch_normalize


def forward_epilogue(layer, out, train):
    """``out`` (N, C, H, W) of the linear op -> the layer's output.  AlexeyAB's channel
    activations (normalize_channels*) follow the bias or batch norm, over the channels; their
    pre-activation is kept for the backward.  ``out`` may be half (``takes_half``)."""
    if out.dtype in kernels.HALF_KINDS and not (out.ndim == 4 and takes_half(layer, train)):
        out = kernels.from_half(out, kernels.HALF_KINDS[out.dtype])
    if layer.activation in CHANNEL_ACTIVATIONS:
        z = _normalize_activate(layer, out, train, "linear")
        layer.activation_input = z
        return activate_channels(z, layer.activation)
    return _normalize_activate(layer, out, train, layer.activation)


def _normalize_activate(layer, out, train, activation):
    keep = activation in NEEDS_INPUT
    if out.dtype in kernels.HALF_KINDS or _fused(out):
        if not layer.batch_normalize:
            y, layer.activation_input = kernels.normalize_activate(
                out, activation, shift=layer.biases, keep_input=keep)
        elif train:
            y, layer.activation_input = kernels.normalize_activate(
                batchnorm_forward(layer, out, train), activation, keep_input=keep)
        else:
            mean, scale, shift = inference_terms(layer, out)
            y, layer.activation_input = kernels.normalize_activate(
                out, activation, mean, scale, shift, keep_input=keep)
        return y
    if layer.batch_normalize:
        out = batchnorm_forward(layer, out, train)
    else:
        out = out + layer.biases.reshape(1, -1, 1, 1)
    layer.activation_input = out if keep else None
    return activate(out, activation)


def backward_epilogue(layer):
    """The delta of the linear op's output; accumulates the bias (or BN) updates."""
    if layer.activation in CHANNEL_ACTIVATIONS:
        delta = channels_backward(layer.delta, layer.output, layer.activation_input,
                                  layer.activation)
        if layer.batch_normalize:
            return batchnorm_backward(layer, delta)
        layer.bias_updates += delta.sum(axis=(0, 2, 3))
        return delta
    if _fused(layer.delta):
        sums = None if layer.batch_normalize else layer.bias_updates
        delta = kernels.activation_backward(layer.delta, layer.output, layer.activation_input,
                                            layer.activation, sums)
        return batchnorm_backward(layer, delta) if layer.batch_normalize else delta
    delta = layer.delta * gradient(layer.output, layer.activation_input, layer.activation)
    if layer.batch_normalize:
        return batchnorm_backward(layer, delta)
    layer.bias_updates += delta.sum(axis=(0, 2, 3))
    return delta
