"""What [convolutional] and [connected] do after their linear op, and its backward: one place
for both layers (pj forward_convolutional_layer / forward_connected_layer).

forward:  batch_normalize ? BN(out) (``biases`` is BN's beta) : out + biases ; then activate
backward: delta *= act'(y) ; BN backward, or bias_updates += sum(delta) ; returns the delta of
          the linear op's output
"""

from ..activations import NEEDS_INPUT, activate, gradient
from .batchnorm import batchnorm_backward, batchnorm_forward


def forward_epilogue(layer, out, train):
    """``out`` (N, C, H, W) of the linear op -> the layer's output."""
    if layer.batch_normalize:
        out = batchnorm_forward(layer, out, train)
    else:
        out = out + layer.biases.reshape(1, -1, 1, 1)
    layer.activation_input = out if layer.activation in NEEDS_INPUT else None
    return activate(out, layer.activation)


def backward_epilogue(layer):
    """The delta of the linear op's output; accumulates the bias (or BN) updates."""
    delta = layer.delta * gradient(layer.output, layer.activation_input, layer.activation)
    if layer.batch_normalize:
        return batchnorm_backward(layer, delta)
    layer.bias_updates += delta.sum(axis=(0, 2, 3))
    return delta
