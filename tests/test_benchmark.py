"""The benchmark's JSON report (tiny config on CPU) and its FLOP count (against a hand count)."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from configs import vgg19
from configs import vgg19_att
from configs import vgg19_att_grid
from ltpa_jax import benchmark
from ltpa_jax.analysis import speed
from ltpa_jax.model import models

ROOT = pathlib.Path(__file__).resolve().parents[1]


def conv(size, cin, cout, k=3):
  return 2 * size * size * k * k * cin * cout


# Full-width VGG19 with b2 = 3 convs (both configs): (spatial size, C_in, C_out) of each 3x3 conv.
TRUNK = ([(32, 3, 64), (32, 64, 64), (32, 64, 128), (32, 128, 128), (32, 128, 128),
          (32, 128, 256), (32, 256, 256), (32, 256, 256),  # b1, b2, b3 = l1 (32x32)
          (16, 256, 512), (16, 512, 512), (16, 512, 512)]  # b4 = l2
         + [(8, 512, 512)] * 3  # b5 = l3
         + [(4, 512, 512), (2, 512, 512)])  # b6, a maxpool after each conv
TRUNK_FLOPS = sum(conv(*c) for c in TRUNK) + conv(1, 512, 512, k=1)  # + `dense`, g


def test_forward_flops_match_a_hand_count_of_full_width_vgg19():
  plain = models.create_model(vgg19.get_config().model, 100)
  assert speed.forward_flops(plain) == TRUNK_FLOPS + 2 * 512 * 100
  # Attention: project l1 256 -> 512 (1x1); per layer the shared u (512 -> 1, 1x1) on l + g and
  # the weighted sum of l; one classifier on the 3 * 512 concatenated descriptors.
  attention = sum(2 * s * s * 512 + 2 * s * s * 512 for s in (32, 16, 8))
  att = models.create_model(vgg19_att.get_config().model, 100)
  assert speed.forward_flops(att) == (TRUNK_FLOPS + conv(32, 256, 512, k=1) + attention
                                          + 2 * 3 * 512 * 100)
  assert round(speed.forward_flops(att) / 1e9, 2) == 8.15  # GFLOPs per 32x32 image
  # Grid gates: per layer W_l (512 -> 256) on l, W_g (512 -> 256) on g, phi (256 -> 1) and the
  # weighted sum of l.
  gates = sum(conv(s, 512, 256, k=1) + conv(1, 512, 256, k=1) + conv(s, 256, 1, k=1)
              + 2 * s * s * 512 for s in (32, 16, 8))
  grid = models.create_model(vgg19_att_grid.get_config().model, 100)
  assert speed.forward_flops(grid) == (TRUNK_FLOPS + conv(32, 256, 512, k=1) + gates
                                           + 2 * 3 * 512 * 100)


def test_peak_tflops_table():
  assert speed.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4
  assert speed.peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.0
  assert speed.peak_tflops("cpu", "float32") is None
  assert speed.peak_tflops("TPU v4", "float32") is None


@pytest.mark.slow
def test_cli_writes_a_complete_report_of_a_sweeps_runs(tmp_path, capsys):
  """Two runs of a sweep (learning rates 0.05 and 0.1) trained together."""
  out = tmp_path / "bench.json"
  command = [sys.executable, "-m", "ltpa_jax.benchmark", "--config", "configs/tiny.py",
             "--config.batch_size=8", "--config.eval_batch_size=16", "--steps", "1",
             "--repeats", "1", "--warmup", "0", "--sweep", "learning_rate=0.05,0.1",
             f"--out={out}"]
  # Under test: the report's fields, not its numbers. Non-partitionable threefry compiles the
  # random init 3x faster on XLA:CPU.
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_THREEFRY_PARTITIONABLE="0",
             PYTHONPATH=str(ROOT))
  result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(out.read_text())
  assert json.loads(result.stdout) == report
  assert ("Benchmarking 2 runs, looped (the default on cpu; --seed_layout=vmap batches "
          "them), on 1 x cpu (cpu), 1 process, float32.") in result.stderr.splitlines()
  assert report["device_kind"] == "cpu" and report["platform"] == "cpu"
  assert report["device_count"] == 1
  assert set(report["versions"]) == {"jax", "jaxlib", "flax", "optax"}
  assert report["dtype"] == "float32" and report["config"]["model"]["width_multiplier"] == 1 / 16
  assert (report["batch_size"], report["steps_per_call"], report["eval_batch_size"]) == (8, 1, 16)
  assert (report["runs"], report["seeds"], report["seed_layout"]) == (2, 1, "loop")
  assert report["sweep"] == {"learning_rate": [0.05, 0.1]}
  memory = report["train_memory_bytes"]  # the params and momentum of both runs, at least
  assert memory["argument"] > 2 * 2 * 4 * 80_000 and memory["peak_estimate"] > memory["argument"]
  for key in ("compile_seconds", "eval_compile_seconds", "train_images_per_second", "ms_per_step",
              "eval_images_per_second", "train_tflops_per_second"):
    assert isinstance(report[key], float) and report[key] > 0, key
  # Python floats derived from the same timing: approx's default rel 1e-6 only absorbs the
  # float64 rounding of the division.
  assert report["ms_per_step"] == pytest.approx(2e3 * 8 / report["train_images_per_second"])
  tiny_flops = report["forward_flops_per_image"]
  assert isinstance(tiny_flops, int) and 0 < tiny_flops < TRUNK_FLOPS / 100
  assert report["train_flops_per_image"] == 3 * tiny_flops
  assert report["train_tflops_per_second"] == pytest.approx(
      3 * tiny_flops * report["train_images_per_second"] / 1e12)
  assert report["peak_tflops_per_second"] is None and report["fraction_of_peak"] is None
  assert "3x" in report["flops_note"]
  # Never overwritten.
  with pytest.raises(SystemExit) as again:
    benchmark.main(command[3:])
  assert again.value.code == 2
  assert capsys.readouterr().err == (f"error: --out {out} exists; not overwriting it. Choose "
                                     "another path.\n")


def assert_issue_29s_candidates(rows: list[dict]):
  """device_sweep.py's dry-run rows of "all candidates" (every model field reaches the config)
  and "widest command buffers" (XLA parses the flag on CPU too: every name `command_buffer_types`
  found is one XLA accepts); tests/test_gpu_job1.py runs them as job 1's candidates."""
  assert [row["name"] for row in rows] == ["all candidates", "widest command buffers"]
  for row in rows:
    assert "error" not in row and row["train_images_per_second"] > 0, row
  assert rows[0]["results"]["config"]["model"] | {
      "attention_narrow_sums": True, "max_pool_by_reshape": True, "conv_bias_free": True,
      "batchnorm_one_pass": True} == rows[0]["results"]["config"]["model"]


def test_device_sweep_reads_xlas_command_buffer_names_and_refuses_unknown_candidates(tmp_path):
  spec = importlib.util.spec_from_file_location("device_sweep", ROOT / "benchmarks/device_sweep.py")
  device_sweep = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(device_sweep)
  assert {"FUSION", "CUBLAS", "CUDNN", "WHILE"} <= set(device_sweep.command_buffer_types())
  bad = subprocess.run([sys.executable, "benchmarks/device_sweep.py", "--out", str(tmp_path),
                        "--dry_run", "--only", "nonsense"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode == 2 and "no candidate named nonsense" in bad.stderr
