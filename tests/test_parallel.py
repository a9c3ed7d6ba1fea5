"""Data-parallel training logic, on the CPU with in-process replicas (no GPU, no NCCL)."""

import threading

import numpy as np
import pytest

from darknet_py.train.parallel import (SingleProcess, ThreadGroup, allreduce_gradients, snapshot)

from conftest import build, rng_for_test

CFG = ("[net]\nbatch={batch}\nsubdivisions={sub}\nchannels=1\nwidth=6\nheight=6\n"
       "learning_rate=0.05\nmomentum=0.9\ndecay=0.001\n"
       "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"
       "[maxpool]\nsize=2\nstride=2\n"
       "[connected]\noutput=3\nactivation=linear\n[softmax]\n")


def data(steps, images, rng):
    x = rng.standard_normal((steps, images, 1, 6, 6)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (steps, images))]
    return x, t


def train_replica(net, comm, xs, ts, rank, world, sub):
    """Each iteration: this rank's shard of every mini-batch, all-reduce, update."""
    per = xs.shape[1] // (world * sub)
    for x, t in zip(xs, ts):
        before = snapshot(net)
        for s in range(sub):
            start = (s * world + rank) * per
            net.train_step(x[start:start + per], t[start:start + per], update=False)
        assert net.update_due()
        allreduce_gradients(net, comm, before)
        net.update()


@pytest.mark.parametrize("world,sub", [(2, 1), (4, 1), (2, 2)])
def test_replicas_end_with_the_weights_of_one_process_with_the_whole_batch(world, sub):
    rng = rng_for_test()
    seed = int(rng.integers(1 << 30))
    xs, ts = data(20, 8 * sub, rng)
    single = build(CFG.format(batch=8 * sub, sub=sub), seed=seed)
    for x, t in zip(xs, ts):
        for s in range(sub):
            single.train_step(x[s * 8:(s + 1) * 8], t[s * 8:(s + 1) * 8])
    group = ThreadGroup(world)
    replicas = []
    for rank in range(world):
        net = build(CFG.format(batch=8 * sub // world, sub=sub), seed=seed)
        net.world_size = world
        replicas.append(net)
    threads = [threading.Thread(target=train_replica,
                                args=(net, group.member(r), xs, ts, r, world, sub))
               for r, net in enumerate(replicas)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for net in replicas:
        assert net.seen == single.seen and net.t == single.t
        for a, b in zip(net.layers, single.layers):
            for name in a.weight_record():
                got, want = getattr(a, name), getattr(b, name)
                assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), (a.type, name)
    # and every replica holds identical weights
    for name in ("weights", "biases"):
        assert all(np.array_equal(getattr(r.layers[0], name), getattr(replicas[0].layers[0], name))
                   for r in replicas)


def test_momentum_history_is_not_summed_over_replicas():
    group = ThreadGroup(2)
    nets = [build(CFG.format(batch=2, sub=1), seed=1) for _ in range(2)]
    for net in nets:
        net.layers[0].weight_updates[...] = 1.0        # momentum x last update, same on both
    befores = [snapshot(net) for net in nets]
    for net in nets:
        net.layers[0].weight_updates += 0.5           # this iteration's gradient on each
    threads = [threading.Thread(target=allreduce_gradients, args=(n, group.member(r), b))
               for r, (n, b) in enumerate(zip(nets, befores))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for net in nets:
        np.testing.assert_array_equal(net.layers[0].weight_updates, 2.0)   # 1 + 0.5 + 0.5


def test_world_size_one_is_the_plain_step():
    rng = rng_for_test()
    xs, ts = data(3, 4, rng)
    a = build(CFG.format(batch=4, sub=1), seed=2)
    b = build(CFG.format(batch=4, sub=1), seed=2)
    for x, t in zip(xs, ts):
        a.train_step(x, t)
    train_replica(b, SingleProcess(), xs, ts, 0, 1, 1)
    np.testing.assert_array_equal(a.layers[0].weights, b.layers[0].weights)


def test_learning_rate_is_not_multiplied_by_the_replicas():
    net = build(CFG.format(batch=4, sub=1), seed=1)
    rate = net.current_rate()
    net.world_size = 4
    assert net.current_rate() == rate and net.update_batch == 16


def test_two_threaded_trainers_stay_identical_and_only_rank_0_writes(tmp_path):
    from darknet_py.data.idx import write_idx
    from darknet_py.train.classifier import ClassifierTrainer
    from darknet_py.train.options import TrainOptions
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("t10k", 8)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 6, 6),
                                                                        dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", rng.integers(0, 3, n,
                                                                        dtype=np.uint8))
    (tmp_path / "d.data").write_text(
        f"classes=3\ntrain={tmp_path}/train-images-idx3-ubyte\n"
        f"valid={tmp_path}/t10k-images-idx3-ubyte\nbackup={tmp_path}/backup\n")
    (tmp_path / "c.cfg").write_text(CFG.format(batch=4, sub=1).replace(
        "[net]\n", "[net]\nmax_batches=6\n"))
    group = ThreadGroup(2)
    options = TrainOptions(device="cpu", seed=5, progress=False)
    trainers = [ClassifierTrainer(str(tmp_path / "c.cfg"), str(tmp_path / "d.data"),
                                  options=options, comm=group.member(r),
                                  out=open("/dev/null", "w")) for r in range(2)]
    threads = [threading.Thread(target=t.run) for t in trainers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    a, b = (t.net for t in trainers)
    assert a.seen == b.seen == 6 * 8 and trainers[0].images_per_iteration == 8
    for la, lb in zip(a.layers, b.layers):
        for name in la.weight_record():
            np.testing.assert_array_equal(getattr(la, name), getattr(lb, name))
    assert (tmp_path / "backup" / "c_final.weights").exists()
