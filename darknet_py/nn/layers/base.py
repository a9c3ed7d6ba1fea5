"""What every layer has: shapes, ``forward``/``backward``/``update``, and its weights record.

Conventions are Darknet's (pj:src/network.c):
* ``output`` and ``delta`` are NCHW arrays ``(batch, out_c, out_h, out_w)``; a flat layer (softmax,
  cost, a route of mismatched maps) has ``out_h = out_w = 1`` and ``flat = True``.
* ``delta`` holds the **negative** gradient of the loss with respect to ``output``; the network
  zeroes it before the forward pass, later layers *add* into it during the backward pass.
* ``*_updates`` accumulate ``-dL/dparam`` summed over every image since the last update; only
  ``update`` changes parameters.
"""

import numpy as np

from ...errors import CfgError, DarknetError

ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-7


class UpdateArgs:
    """What ``update_network`` hands to each layer (pj: update_args)."""

    def __init__(self, learning_rate, momentum, decay, batch, adam=False, t=0,
                 b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS):
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.decay = decay
        self.batch = batch          # B = mini-batch x subdivisions
        self.adam = adam
        self.t = t
        self.b1, self.b2, self.eps = b1, b2, eps


class Layer:
    type = "layer"
    #: the section keys ``from_cfg`` reads (besides network.COMMON_KEYS): reading another one
    #: is a programming error, and ``cfg check`` calls any other Darknet key unsupported
    cfg_keys = frozenset()
    #: keys of Darknet's training this layer reads but does not implement, with the value
    #: that changes nothing (None: any); a training run and `cfg check` name the ones set
    training_unimplemented = {}
    #: names of the parameter arrays, each paired with ``<name>_updates`` style buffers
    params = ()
    #: the previous layer must give an image (c, h, w), not a flat vector
    needs_image = False

    def __init__(self):
        self.index = 0
        self.unimplemented = []      # (key, value, line): see training_unimplemented
        self.c = self.h = self.w = 0
        self.out_c = self.out_h = self.out_w = 0
        self.flat = False
        self.output = None
        self.delta = None
        self.cost = None            # a float for layers with a loss
        self.learning_rate_scale = 1.0
        self.stopbackward = False
        self.dontsave = self.dontload = self.dontloadscales = False
        self.truth = False
        self.line = 0
        self.path = ""

    # -- shapes ----------------------------------------------------------------------------
    @property
    def inputs(self):
        return self.c * self.h * self.w

    @property
    def outputs(self):
        return self.out_c * self.out_h * self.out_w

    @property
    def out_shape(self):
        return (self.out_c, self.out_h, self.out_w)

    def set_input(self, shape, flat, section):
        """Record the input shape; layers that need an image refuse a flat input."""
        self.c, self.h, self.w = shape
        if self.needs_image and (flat or self.c * self.h * self.w == 0):
            raise CfgError(f"[{section.name}] needs an image input (channels x height x width), "
                           "but the previous layer gives a flat vector", section.path, section.line)

    def input_image(self, x):
        """The previous layer's output as this layer's (N, c, h, w)."""
        return x.reshape(x.shape[0], self.c, self.h, self.w)

    def truth_for(self, net, shape):
        """The truth as ``shape``; a clear error when it has the wrong number of values."""
        per_image = int(np.prod(shape[1:]))
        if net.truth.size != shape[0] * per_image:
            raise DarknetError(f"layer {self.index} [{self.type}] needs {per_image} truth values "
                               f"per image but got {net.truth.size // max(shape[0], 1)}",
                               self.path, self.line)
        return net.truth.reshape(shape)

    # -- the three steps -------------------------------------------------------------------
    def forward(self, net):
        raise NotImplementedError

    def backward(self, net):
        """Add this layer's input gradient into ``net.delta`` (may be None for layer 0)."""

    def update(self, args):
        """Apply the accumulated ``*_updates`` (SGD with momentum and decay, or Adam)."""

    # -- weights file ----------------------------------------------------------------------
    def weight_record(self):
        """Names of the arrays this layer stores in a .weights file, in file order."""
        return ()

    # -- summary ---------------------------------------------------------------------------
    def describe(self):
        """Darknet's summary line body for this layer (pj make_*_layer fprintf)."""
        return f"{self.type:<8s}"

    def bflops(self):
        return 0.0

    def n_params(self):
        return sum(int(np.prod(getattr(self, name).shape)) for name in self.weight_record()
                   if name not in ("rolling_mean", "rolling_variance"))

    # -- persistent arrays -------------------------------------------------------------------
    def arrays(self):
        """Every persistent array of this layer (parameters, statistics, update buffers)."""
        names = list(self.weight_record())
        for p in self.params:
            names.append(UPDATE_NAMES[p])
        return [n for n in dict.fromkeys(names) if getattr(self, n, None) is not None]

    # -- the update rule, shared by every layer with parameters ----------------------------
    def apply_update(self, param, args, decay):
        """Darknet's update of one parameter array, in place (pj update_convolutional_layer).

        SGD (momentum m, decay d, B = batch x subdivisions, lr = rate x layer scale)::

            U += -d * B * w        # weights only (decay=True)
            w += lr / B * U
            U *= m

        i.e. PyTorch SGD on the batch-mean gradient with weight_decay d.  Adam (pj
        adam_update_gpu): lr is not divided by B and decay applies to every array.
        """
        w = getattr(self, param)
        u = getattr(self, UPDATE_NAMES[param])
        lr = args.learning_rate * self.learning_rate_scale
        if args.adam:
            m_name, v_name = param + "_m", param + "_v"
            m = getattr(self, m_name, None)
            if m is None:
                m = w * 0
                setattr(self, m_name, m)
                setattr(self, v_name, w * 0)
            v = getattr(self, v_name)
            m *= args.b1
            v *= args.b2
            u += -args.decay * args.batch * w
            m += (1 - args.b1) * u
            v += (1 - args.b2) * u * u
            t = max(args.t, 1)
            mhat = m / (1 - args.b1 ** t)
            vhat = v / (1 - args.b2 ** t)
            w += lr * mhat / ((vhat ** 0.5) + args.eps)
            u *= 0
            return
        if decay:
            u += -args.decay * args.batch * w
        w += (lr / args.batch) * u
        u *= args.momentum


UPDATE_NAMES = {"weights": "weight_updates", "biases": "bias_updates", "scales": "scale_updates"}
