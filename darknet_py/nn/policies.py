"""Learning-rate policies and burn-in (pj:src/network.c get_current_rate).

``batch_num`` is the number of completed weight updates, read *after* ``seen`` was increased,
so the first update uses batch_num = 1.  Burn-in comes first for every policy:
rate = lr * (batch_num / burn_in) ** power while batch_num < burn_in.
"""

import math
import random

POLICIES = ("constant", "step", "exp", "poly", "steps", "sigmoid", "random", "sgdr")


def current_rate(p, batch_num):
    """The learning rate for update number ``batch_num`` given the [net] options ``p``."""
    lr = p.learning_rate
    if batch_num < p.burn_in:
        return lr * (batch_num / p.burn_in) ** p.power
    policy = p.policy
    if policy == "constant":
        return lr
    if policy == "step":
        return lr * p.scale ** (batch_num // p.step)
    if policy == "steps":
        rate = lr
        for step, scale in zip(p.steps, p.scales):
            if step > batch_num:
                break
            rate *= scale
        return rate
    if policy == "exp":
        return lr * p.gamma ** batch_num
    if policy == "poly":
        return lr * (1 - batch_num / p.max_batches) ** p.power if p.max_batches else lr
    if policy == "random":
        return lr * random.random() ** p.power
    if policy == "sigmoid":
        # the intended curve (pj's unsigned arithmetic gives 0 before `step`)
        z = p.gamma * (batch_num - p.step)
        return lr / (1 + math.exp(min(z, 700.0)))
    if policy == "sgdr":
        start, length = 0, p.sgdr_cycle
        while start + length < batch_num:
            start += length
            length *= p.sgdr_mult
        lo = p.learning_rate_min
        return lo + 0.5 * (lr - lo) * (1 + math.cos(math.pi * (batch_num - start) / length))
    raise ValueError(policy)
