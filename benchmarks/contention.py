"""The CPU main job beside another CPU-bound process: BLAS's default thread count against the
count training sets (data/threads.py blas_threads).

    python benchmarks/contention.py [--iterations 60] [--repeats 3] [--burners 1]

Times ``darknet_py train cfg/mnist.cfg data/mnist.data --max-batches N`` on the CPU, quiet and
with ``--burners`` busy-looping processes beside it, for two settings: ``old`` (the environment
sets OPENBLAS_NUM_THREADS to the core count, BLAS's default, which training then leaves alone)
and ``new`` (training chooses).  One JSON line per setting and load: the training iterations'
seconds (from the run's log: no start-up, no final validation) as min / median / max over the
repeats, the whole command's wall time likewise, and for the loaded runs ``slowdown``: the
median over the quiet median of the same setting.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from darknet_py.data.threads import BLAS_ENV, blas_threads, usable_cores  # noqa: E402

BURN = "while True: pass"


def data_file(folder):
    """data/mnist.data with absolute paths and its backup folder in ``folder``."""
    mnist = os.path.join(ROOT, "data", "mnist")
    path = os.path.join(folder, "mnist.data")
    with open(path, "w") as f:
        f.write(f"classes=10\ntrain={mnist}/train-images-idx3-ubyte.gz\n"
                f"valid={mnist}/t10k-images-idx3-ubyte.gz\n"
                f"names={os.path.join(ROOT, 'data', 'mnist.names')}\n"
                f"backup={os.path.join(folder, 'backup')}\ntop=2\n")
    return path


def one_run(folder, iterations, env):
    """(training seconds, wall seconds) of one run of the main job."""
    shutil.rmtree(os.path.join(folder, "backup"), ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "darknet_py", "train",
                    os.path.join(ROOT, "cfg", "mnist.cfg"), data_file(folder),
                    "--max-batches", str(iterations), "--no-progress", "--seed", "1",
                    "--device", "cpu"], check=True, env=env, cwd=folder,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    with open(os.path.join(folder, "backup", "mnist.log.jsonl")) as log:
        seconds = sum(json.loads(line).get("seconds", 0) for line in log
                      if '"iteration"' in line)
    return seconds, wall


def spread(values):
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2),
            "max": round(max(values), 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--burners", type=int, default=1, help="busy processes beside the job")
    ap.add_argument("--loads", nargs="+", choices=["quiet", "loaded"],
                    default=["quiet", "loaded"], help="which runs (a slowdown needs both)")
    args = ap.parse_args()
    cores = usable_cores()
    base = {k: v for k, v in os.environ.items() if k not in BLAS_ENV}
    base["PYTHONPATH"] = ROOT + os.pathsep + base.get("PYTHONPATH", "")
    settings = {"old": (dict(base, OPENBLAS_NUM_THREADS=str(cores)), cores),
                "new": (base, blas_threads(0, cores))}
    with tempfile.TemporaryDirectory() as folder:
        quiet = {}
        for load in args.loads:
            for name, (env, threads) in settings.items():
                runs = []
                for _ in range(args.repeats):
                    burners = [subprocess.Popen([sys.executable, "-c", BURN])
                               for _ in range(args.burners if load == "loaded" else 0)]
                    try:
                        runs.append(one_run(folder, args.iterations, env))
                    finally:
                        for p in burners:
                            p.kill()
                            p.wait()
                train = [s for s, _ in runs]
                line = {"setting": name, "blas_threads": threads, "cores": cores,
                        "load": load if load == "quiet" else f"{args.burners} busy process(es)",
                        "iterations": args.iterations, "train_s": spread(train),
                        "wall_s": spread([w for _, w in runs])}
                if load == "quiet":
                    quiet[name] = statistics.median(train)
                elif name in quiet:
                    line["slowdown"] = round(statistics.median(train) / quiet[name], 2)
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
