"""benchmarks/torch_peer.py: its device-side augmentation, and its CPU dry run's report."""

import importlib.util
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def torch_peer():
  spec = importlib.util.spec_from_file_location("torch_peer", ROOT / "benchmarks/torch_peer.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_device_augmentation_is_a_crop_of_the_zero_padded_image_maybe_flipped():
  peer = torch_peer()
  rng = np.random.default_rng(0)
  images = rng.integers(1, 256, (5, 32, 32, 3), np.uint8)  # no zeros: the padding shows
  mean, std = (torch.tensor(v)[:, None, None] for v in (peer.MEAN, peer.STD))
  x, labels = peer.crop_flip_on_device(
      torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.arange(5), mean, std,
      torch.Generator().manual_seed(0))
  assert x.shape == (peer.BATCH, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
  pixels = np.rint(((x * std + mean) * 255).numpy()).astype(np.uint8).transpose(0, 2, 3, 1)
  flips = 0
  for out, label in zip(pixels, labels.numpy()):
    padded = np.pad(images[label], ((4, 4), (4, 4), (0, 0)))
    crops = [(padded[i:i + 32, j:j + 32], flip) for i in range(9) for j in range(9)
             for flip in (False, True)]
    matches = [flip for crop, flip in crops if (out == (crop[:, ::-1] if flip else crop)).all()]
    assert matches, label
    flips += matches[0]
  assert 0 < flips < peer.BATCH  # both ways occur


def assert_both_eager_modes(report: dict):
  """The report of torch_peer.py's CPU dry run (tests/test_gpu_job1.py runs it, as job 1's peer
  stage): both eager modes, 2 steps each, losses of a first step."""
  assert (report["device"], report["width"], report["batch_size"]) == ("cpu", 0.0625, 64)
  assert list(report["modes"]) == ["reference", "eager_bf16"]  # no torch.compile on CPU
  for mode in report["modes"].values():
    assert mode["steps"] == 2 and mode["warmup_seconds"] >= mode["first_step_seconds"] > 0
    assert mode["images_per_second"] == pytest.approx(2 * 64 / mode["timed_seconds"])
    # One step from init: cross-entropy near ln(100), the loss of uniform predictions.
    assert abs(mode["last_loss"] - math.log(100)) < 1.0, mode


@pytest.mark.slow
def test_an_existing_report_is_not_overwritten(tmp_path):
  out = tmp_path / "peer.json"
  out.write_text("{}")
  again = subprocess.run([sys.executable, "benchmarks/torch_peer.py", "--out", str(out),
                          "--dry_run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert again.returncode == 2 and "exists" in again.stderr and out.read_text() == "{}"
