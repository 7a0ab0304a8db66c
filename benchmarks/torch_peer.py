"""The strongest PyTorch peer of the JAX benchmark, timed on the same device in the same call.

    python benchmarks/torch_peer.py --out $OUT/torch_peer.json --jax     # on the GPU
    python benchmarks/torch_peer.py --out /tmp/peer.json --dry_run       # on CPU, see below

The model: tests/torch_reference.py's ReferenceVGG as configs/vgg19_att.py sets it (sigmoid
attention, one shared u, b2 = 3 convs), at full width unless --width; PyTorch's default init; SGD
lr 0.1, momentum 0.9, weight decay 1e-4; cross-entropy; batch 64; synthetic uint8 CIFAR-shaped
images held in memory (--examples). Modes, in order:

  reference   the reference code's loop: eager float32, NCHW, a DataLoader (--workers processes)
              over the uint8 images with random crop (zero padding 4) + horizontal flip, then
              ToTensor and Normalize as torchvision does them, copied to the device each step.
  eager_bf16  eager, bfloat16 autocast, channels_last, cuDNN autotuning; the images on the device,
              cropped, flipped and normalised there; SGD fused (CUDA) or foreach.
  compiled    eager_bf16's step with the model under torch.compile(mode="max-autotune"), which
              records CUDA graphs on CUDA. Not run on CPU unless --modes names it (then in
              torch.compile's default mode: CUDA graphs need CUDA); inductor's CPU compile of
              this model takes minutes on a small machine.

Each mode: --warmup steps first (their time reported apart: warmup_seconds, and the first step's,
torch.compile's compilation and autotuning included, first_step_seconds), then --steps timed
steps, the device synchronised before and after. The report is written after each mode. --jax
also runs the JAX baseline (`python -m ltpa_jax.benchmark`, device_sweep.py's baseline: vgg19_att,
bfloat16, batch 64) in this call, its report under "jax". --dry_run: width 1/16, 2 timed steps
after 1 warm-up, 256 images, modes reference and eager_bf16 on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]  # tests/, and device_sweep when imported
from tests import torch_reference  # pylint: disable=wrong-import-position
import device_sweep  # pylint: disable=wrong-import-position

MODES = ("reference", "eager_bf16", "compiled")
MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)  # CIFAR-100, the reference's
BATCH = 64


class CropFlip(torch.utils.data.Dataset):
  """The reference's training set: uint8 images (N, 32, 32, 3) -> RandomCrop(32, padding=4),
  RandomHorizontalFlip, ToTensor, Normalize (in numpy, as torchvision's transforms compute them)."""

  def __init__(self, images, labels):
    self.images, self.labels = images, labels

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    rng = np.random.default_rng()
    padded = np.pad(self.images[i], ((4, 4), (4, 4), (0, 0)))
    top, left = rng.integers(0, 9, 2)
    x = padded[top:top + 32, left:left + 32]
    if rng.random() < 0.5:
      x = x[:, ::-1]
    x = (x.transpose(2, 0, 1) / np.float32(255) - np.array(MEAN, np.float32)[:, None, None])
    return torch.from_numpy(x / np.array(STD, np.float32)[:, None, None]), int(self.labels[i])


def crop_flip_on_device(images, labels, mean, std, generator):
  """A random batch of the device's uint8 images (N, 3, 32, 32): cropped from the zero-padded
  images, flipped, normalised, channels_last."""
  n = images.shape[0]
  index = torch.randint(0, n, (BATCH,), device=images.device, generator=generator)
  padded = F.pad(images[index], (4, 4, 4, 4))
  offsets = torch.randint(0, 9, (2, BATCH), device=images.device, generator=generator)
  span = torch.arange(32, device=images.device)
  rows, cols = (offsets[0][:, None] + span)[:, :, None], (offsets[1][:, None] + span)[:, None, :]
  x = padded[torch.arange(BATCH, device=images.device)[:, None, None], :, rows, cols]  # N,H,W,C
  flip = torch.rand(BATCH, device=images.device, generator=generator) < 0.5
  x = torch.where(flip[:, None, None, None], x.flip(2), x).permute(0, 3, 1, 2)
  x = (x.float() / 255 - mean) / std
  return x.contiguous(memory_format=torch.channels_last), labels[index]


def make_model(width: float, device) -> nn.Module:
  return torch_reference.ReferenceVGG(normalisation="sigmoid", shared_u=True, b2_convs=3,
                                      width_multiplier=width).to(device)


def sgd(model, device, fast: bool):
  kind = {} if not fast else ({"fused": True} if device.type == "cuda" else {"foreach": True})
  return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, **kind)


def synchronize(device):
  if device.type == "cuda":
    torch.cuda.synchronize(device)


def time_steps(step, batches, device, warmup: int, steps: int) -> dict:
  """Runs `step` on `warmup` then `steps` batches from the iterator `batches`; the timings: the
  first step's apart (torch.compile compiles then), the warm-up's in all, the timed steps'."""
  synchronize(device)
  times = [time.perf_counter()]
  for _ in range(warmup):
    step(*next(batches))
    synchronize(device)
    times.append(time.perf_counter())
  timed = times[-1]
  for _ in range(steps):
    loss = step(*next(batches))
  synchronize(device)
  seconds = time.perf_counter() - timed
  return {"first_step_seconds": times[1] - times[0] if warmup else None,
          "warmup_seconds": timed - times[0], "timed_seconds": seconds, "steps": steps,
          "images_per_second": steps * BATCH / seconds, "ms_per_step": 1e3 * seconds / steps,
          "last_loss": float(loss)}


def reference_mode(images, labels, args, device) -> dict:
  model = make_model(args.width, device).train()
  optimizer = sgd(model, device, fast=False)
  loader = torch.utils.data.DataLoader(CropFlip(images, labels), batch_size=BATCH, shuffle=True,
                                       num_workers=args.workers, drop_last=True,
                                       pin_memory=device.type == "cuda")

  def batches():
    while True:
      yield from loader

  def step(x, y):
    x, y = x.to(device), y.to(device)
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x)[0], y)
    loss.backward()
    optimizer.step()
    return loss.detach()

  return time_steps(step, batches(), device, args.warmup, args.steps)


def fast_mode(images, labels, args, device, compiled: bool) -> dict:
  torch.backends.cudnn.benchmark = True
  model = make_model(args.width, device).to(memory_format=torch.channels_last).train()
  optimizer = sgd(model, device, fast=True)
  forward = model
  if compiled:
    mode = "max-autotune" if device.type == "cuda" else "default"
    forward = torch.compile(model, mode=mode)
  images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
  labels = torch.from_numpy(labels).long().to(device)
  mean, std = (torch.tensor(v, device=device)[:, None, None] for v in (MEAN, STD))
  generator = torch.Generator(device).manual_seed(0)

  def batches():
    while True:
      yield crop_flip_on_device(images, labels, mean, std, generator)

  def step(x, y):
    if compiled and device.type == "cuda":
      torch.compiler.cudagraph_mark_step_begin()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
      loss = F.cross_entropy(forward(x)[0], y)
    loss.backward()
    optimizer.step()
    return loss.detach().clone()

  result = time_steps(step, batches(), device, args.warmup, args.steps)
  if compiled:
    result["compile_mode"] = mode
  return result


def jax_baseline(dry_run: bool) -> dict:
  """device_sweep.py's baseline as one `python -m ltpa_jax.benchmark` process: its report."""
  with tempfile.TemporaryDirectory() as folder:
    out = os.path.join(folder, "jax.json")
    command = device_sweep.command(device_sweep.BASE, out, dry_run, cache_dir=folder)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode:
      return {"error": result.stderr.strip().splitlines()[-1:]}
    with open(out) as f:
      return json.load(f)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="the JSON report (never overwritten)")
  parser.add_argument("--modes", default=None,
                      help=f"comma-separated, of {', '.join(MODES)}; default: all on CUDA, "
                      "the eager ones elsewhere")
  parser.add_argument("--width", type=float, default=1.0, help="width multiplier")
  parser.add_argument("--steps", type=int, default=100, help="timed steps per mode")
  parser.add_argument("--warmup", type=int, default=5, help="untimed steps first, per mode")
  parser.add_argument("--examples", type=int, default=50_000, help="synthetic training images")
  parser.add_argument("--workers", type=int, default=4, help="the reference's DataLoader workers")
  parser.add_argument("--jax", action="store_true", help="also the JAX baseline, in this call")
  parser.add_argument("--dry_run", action="store_true",
                      help="width 1/16, 1 warm-up and 2 timed steps, 256 images (CPU)")
  args = parser.parse_args()
  if args.dry_run:
    args.width, args.steps, args.warmup, args.examples = 0.0625, 2, 1, 256
  if args.steps < 1 or args.warmup < 0:
    parser.error(f"need --steps >= 1 and --warmup >= 0; got {args.steps}, {args.warmup}")
  if os.path.exists(args.out):
    parser.error(f"{args.out} exists; not overwriting it.")
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  modes = (args.modes.split(",") if args.modes else
           MODES if device.type == "cuda" else MODES[:2])
  if unknown := [m for m in modes if m not in MODES]:
    parser.error(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.examples, 32, 32, 3), np.uint8)
  labels = rng.integers(0, 100, args.examples).astype(np.int64)
  report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "width": args.width, "batch_size": BATCH,
            "examples": args.examples, "workers": args.workers, "modes": {}}
  for mode in modes:
    torch.manual_seed(0)
    if mode == "reference":
      report["modes"][mode] = reference_mode(images, labels, args, device)
    else:
      report["modes"][mode] = fast_mode(images, labels, args, device, mode == "compiled")
    print(f"{mode}: {report['modes'][mode]['images_per_second']:,.0f} images/s", flush=True)
    write(report, args.out)
  if args.jax:
    report["jax"] = jax_baseline(args.dry_run)
    write(report, args.out)
  print(json.dumps(report, indent=2))


def write(report: dict, path: str) -> None:
  """The report so far, written by a rename: a call cut short keeps the modes it measured."""
  with open(path + ".part", "w") as f:
    json.dump(report, f, indent=2)
  os.replace(path + ".part", path)


if __name__ == "__main__":
  main()
