"""AlexeyAB's ``[net] ema_alpha``: an exponential moving average of the [convolutional] layers'
parameters over the second half of training (ab:src/network.c train_network_waitkey,
ema_update, ema_apply, is_ema_initialized; ab:src/detector.c writes ``<cfg>_ema.weights``).

After each iteration's update, with ``start = max_batches / 2`` (integer division) and
``apply_point = max_batches - 1000``, once ``iteration >= start``:

* the EMA is initialised to the weights when it is not yet (AB: no ``weights_ema`` value of any
  conv layer is nonzero; ab ema_update with alpha 0);
* at ``apply_point`` the weights become the EMA (ab ema_apply; the batch-norm rolling
  statistics are left as they are, as in AB);
* before it, ``ema = alpha ema + (1 - alpha) w`` in float32, as AB's C computes it;
* after it, nothing (the EMA keeps the weights of the apply point).

Only ``[convolutional]`` layers: weights, biases and, with batch_normalize, scales; not the
rolling statistics.  ``max_batches`` is the cfg's, as in AB (and the learning-rate policy):
``--max-batches`` only says where a run stops.  AB counts ``iteration`` from 0 in every process,
so a resumed run starts the schedule over; darknet_py counts the global iteration (the
trainer's, from ``seen``) and keeps the EMA arrays in the layers' ``state()`` (the --resume
state file), so a resumed run equals an uninterrupted one.  All on the layers' own arrays (CPU or
GPU), in place: multi-scale copies (Network.resized) share them.
"""

import numpy as np

from ..nn.backend import xp_of

#: each averaged parameter and its EMA array (AB's names)
EMA_NAMES = {"biases": "biases_ema", "scales": "scales_ema", "weights": "weights_ema"}


def ema_schedule(iteration, max_batches):
    """What AB does after the update that made ``iteration`` updates in all (ab
    train_network_waitkey): None before ``max_batches / 2``; from there on the EMA is
    initialised if it is not yet, then ``"apply"`` at ``max_batches - 1000`` (weights = EMA),
    ``"update"`` before it, ``"keep"`` after it (initialisation only)."""
    if iteration < max_batches // 2:
        return None
    apply_point = max_batches - 1000
    if iteration == apply_point:
        return "apply"
    return "update" if iteration < apply_point else "keep"


def averaged(layer):
    """The parameters of ``layer`` AB averages: those of a [convolutional] with weights of its
    own (not a share_index layer), in its weights record."""
    if layer.type != "convolutional":
        return ()
    record = layer.weight_record()
    return tuple(p for p in EMA_NAMES if p in record)


class Ema:
    """The EMA of ``net``'s conv parameters, registered as persistent state of each layer
    (``<param>_ema``, zeros until initialised).  ``max_batches``: the cfg's."""

    def __init__(self, net, alpha, max_batches):
        self.alpha = np.float32(alpha)
        self.max_batches = max_batches
        self.layers = [(layer, averaged(layer)) for layer in net.layers if averaged(layer)]
        for layer, params in self.layers:
            for p in params:
                w = getattr(layer, p)
                layer.add_persistent(EMA_NAMES[p], xp_of(w).zeros_like(w))
        self._initialized = None        # unknown until asked (the arrays may be restored)

    @classmethod
    def for_net(cls, net):
        """The EMA of a network whose cfg sets ``ema_alpha``, else None."""
        o = net.options
        return cls(net, o.ema_alpha, o.max_batches) if o.ema_alpha else None

    def initialized(self):
        """AB's is_ema_initialized: some conv layer's weights EMA is nonzero (read from the
        device once; it stays initialised)."""
        if not self._initialized:
            self._initialized = any(
                bool(xp_of(layer.weights_ema).count_nonzero(layer.weights_ema))
                for layer, params in self.layers if "weights" in params)
        return self._initialized

    def after_update(self, iteration):
        """AB's schedule after the update that completed ``iteration``; returns what it did,
        for the log: None, or a list of "initialized", "applied", "updated"."""
        action = ema_schedule(iteration, self.max_batches)
        if action is None:
            return None
        done = []
        if not self.initialized():
            self._blend(np.float32(0))      # ab ema_update(net, 0)
            self._initialized = True
            done.append("initialized")
        if action == "apply":
            for layer, params in self.layers:           # ab ema_apply
                for p in params:
                    getattr(layer, p)[...] = getattr(layer, EMA_NAMES[p])
            done.append("applied")
        elif action == "update":
            self._blend(self.alpha)
            done.append("updated")
        return done

    def _blend(self, alpha):
        """ema = alpha ema + (1 - alpha) w, each product and the sum rounded to float32 (ab
        ema_update)."""
        keep = np.float32(1) - alpha
        for layer, params in self.layers:
            for p in params:
                ema = getattr(layer, EMA_NAMES[p])
                ema *= alpha
                ema += getattr(layer, p) * keep

    def stored(self, layer, name):
        """The array AB's ``_ema.weights`` holds for ``name`` of ``layer``'s weights record (ab
        save_convolutional_weights_ema): the EMA for the averaged parameters, else the layer's
        own (the rolling statistics, the other layers).  Network.save_weights's ``arrays``."""
        if name in EMA_NAMES and EMA_NAMES[name] in layer.state():
            return getattr(layer, EMA_NAMES[name])
        return getattr(layer, name)
