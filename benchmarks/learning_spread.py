"""The spread of the learning tests' outcomes over seeds, each test's exact setup (issue 11).

    python benchmarks/learning_spread.py --test cifar100 --seeds 0,1,2,3,4
    taskset -c 0 python benchmarks/learning_spread.py --test cifar100 --seeds 0,1,2,3,4

--test picks the setup, imported from the test module so that it cannot drift:
  cifar100       tests/test_train.py::test_tiny_model_learns_cifar100_resplit (config.seed)
  fashion_mnist  tests/test_fashion_mnist_training.py (config.seed)
  fixed_batch    tests/test_train.py::test_fits_a_small_fixed_batch (the init key)
Prints one JSON line per seed: the outcomes the test bounds, wall and CPU seconds of the run, the
CPUs the process may use (`taskset -c 0`: one), the load average and the jax version. Data as the
tests find them: ../shared/tensorflow_datasets (CIFAR-100 (re-split)) and the Fashion-MNIST
archives in ../shared/data/fashion_mnist, prepared once into --fashion_mnist_dir.
"""

import argparse
import json
import os
import pathlib
import resource
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from ltpa_jax.data import tfds_builders  # pylint: disable=wrong-import-position
from ltpa_jax.training import loop as train  # pylint: disable=wrong-import-position
from tests import test_fashion_mnist_training  # pylint: disable=wrong-import-position
from tests import test_train  # pylint: disable=wrong-import-position


def cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def run_and_evaluate(config) -> dict:
  with tempfile.TemporaryDirectory() as workdir:
    final = train.train_and_evaluate(config, workdir)["final"]
  return {k: round(final[k], 2) for k in ("test_top1_error", "test_top5_error", "test_loss")}


def outcome(test: str, seed: int, fashion_mnist_dir: str) -> dict:
  if test == "cifar100":
    data_dir = str(SHARED / "tensorflow_datasets")
    return run_and_evaluate(test_train.cifar100_learning_config(data_dir, seed))
  if test == "fashion_mnist":
    tfds_builders.prepare("fashion_mnist", fashion_mnist_dir,
                          manual_dir=str(SHARED / "data" / "fashion_mnist"), download=False)
    return run_and_evaluate(test_fashion_mnist_training.learning_config(fashion_mnist_dir, seed))
  if test == "fixed_batch":
    losses = test_train.fixed_batch_losses(seed)
    return {"first_loss": round(losses[0], 3), "last_10_mean_loss": round(np.mean(losses[-10:]), 3)}
  raise ValueError(f"--test must be cifar100, fashion_mnist or fixed_batch, got {test!r}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--test", required=True, choices=("cifar100", "fashion_mnist", "fixed_batch"))
  parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated")
  parser.add_argument("--fashion_mnist_dir",
                      default=os.path.join(tempfile.gettempdir(), "ltpa_fashion_mnist_tfds"),
                      help="TFDS data_dir for the prepared Fashion-MNIST (made if absent)")
  args = parser.parse_args()
  for seed in (int(s) for s in args.seeds.split(",")):
    start, cpu_start = time.perf_counter(), cpu_seconds()
    result = outcome(args.test, seed, args.fashion_mnist_dir)
    print(json.dumps({
        "test": args.test, "seed": seed, **result,
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu_s": round(cpu_seconds() - cpu_start, 1),
        "cpus": sorted(os.sched_getaffinity(0)), "load_avg": round(os.getloadavg()[0], 1),
        "jax": jax.__version__}), flush=True)


if __name__ == "__main__":
  main()
