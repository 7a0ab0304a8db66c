"""Issue 14's speed candidates, measured in one device call on synthetic data.

    python benchmarks/device_sweep.py --out $OUT             # on the GPU (~8 minutes)
    python benchmarks/device_sweep.py --out /tmp/sweep --dry_run   # on CPU: tiny widths

Each candidate (config x dtype x seeds trained together x seed layout x steps per call x XLA
flag set x BatchNorm's variance in one pass) is one `python -m ltpa_jax.benchmark` process, since XLA reads its flags when a
process starts; "3 programs" runs three one-seed processes at once and adds their images/s (their
timed windows overlap, not exactly). Candidates run in the order below while --budget_s lasts;
after each, sweep.json and sweep.md in --out are written anew, so a call stopped early still
returns what it measured. The first two share a fresh compilation cache: the second's compile
time is that of a restarted run. The others compile without the cache (cold compile times).
Every candidate keeps the recipe's maths: batch 64, per-step BatchNorm statistics (in one pass:
E[x^2] - E[x]^2, the same maths with other rounding).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# XLA flag sets to compare with XLA's defaults.
FLAG_SETS = {
    "default": "",
    "latency hiding": "--xla_gpu_enable_latency_hiding_scheduler=true",
    "while-loop double buffering": "--xla_gpu_enable_while_loop_double_buffering=true",
    "no command buffers": "--xla_gpu_enable_command_buffer=",
}
BASE = {"config": "vgg19_att", "dtype": "bfloat16", "seeds": 1, "layout": "vmap",
        "steps": 100, "flags": "default", "processes": 1, "cache": None, "one_pass": False}
# (name, changes to BASE), in order of priority.
CANDIDATES = (
    ("baseline (cold compile)", {"cache": "fresh"}),
    ("baseline, restarted (compile cache)", {"cache": "fresh"}),
    ("3 seeds vmapped", {"seeds": 3}),
    ("3 seeds looped", {"seeds": 3, "layout": "loop"}),
    ("3 programs at once", {"processes": 3}),
    ("vgg19", {"config": "vgg19"}),
    ("vgg19, 3 seeds vmapped", {"config": "vgg19", "seeds": 3}),
    ("latency hiding", {"flags": "latency hiding"}),
    ("while-loop double buffering", {"flags": "while-loop double buffering"}),
    ("no command buffers", {"flags": "no command buffers"}),
    ("391 steps per call", {"steps": 391}),
    ("BatchNorm in one pass", {"one_pass": True}),
    ("2 seeds looped", {"seeds": 2, "layout": "loop"}),
    ("float32", {"dtype": "float32"}),
)
# The dry run: tiny widths and batches, one step per call (XLA:CPU loops are slow).
DRY_RUN_FLAGS = ["--config.model.width_multiplier=0.0625", "--config.batch_size=8",
                 "--config.eval_batch_size=16"]


def command(candidate: dict, out: str, dry_run: bool, cache_dir: str) -> list[str]:
  steps, repeats, warmup = (1, 2, 1) if dry_run else (candidate["steps"], 5, 1)
  return [sys.executable, "-m", "ltpa_jax.benchmark",
          "--config", f"configs/{candidate['config']}.py",
          f"--config.model.dtype={candidate['dtype']}", f"--seeds={candidate['seeds']}",
          f"--seed_layout={candidate['layout']}", f"--steps={steps}", f"--repeats={repeats}",
          f"--warmup={warmup}", f"--out={out}",
          f"--compilation_cache={cache_dir if candidate['cache'] else ''}",
          f"--config.model.batchnorm_one_pass={candidate['one_pass']}",
          *(DRY_RUN_FLAGS if dry_run else [])]


def measure(name: str, candidate: dict, folder: str, dry_run: bool, cache_dir: str) -> dict:
  """Runs the candidate's benchmark process(es); returns its row: the candidate, and the
  benchmark's results (images/s summed over processes) or the error's last lines."""
  env = dict(os.environ, XLA_FLAGS=" ".join(
      f for f in (os.environ.get("XLA_FLAGS", ""), FLAG_SETS[candidate["flags"]]) if f))
  outs = [os.path.join(folder, f"{len(os.listdir(folder))}_{i}.json")
          for i in range(candidate["processes"])]
  start = time.perf_counter()
  processes = [subprocess.Popen(command(candidate, out, dry_run, cache_dir), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for out in outs]
  errors = [p.communicate()[1] for p in processes]
  row = {"name": name, **candidate, "wall_seconds": time.perf_counter() - start}
  if any(p.returncode for p in processes):
    row["error"] = "\n".join(e.strip().splitlines()[-1] for e in errors if e.strip())[-500:]
    return row
  results = [json.load(open(out)) for out in outs]
  row["results"] = results[0]
  row["train_images_per_second"] = sum(r["train_images_per_second"] for r in results)
  return row


def markdown(rows: list[dict]) -> str:
  """The sweep's table: each candidate's settings, compile time and speed."""
  baseline = next((r for r in rows if "results" in r), None)
  lines = ["| candidate | config | dtype | seeds | layout | steps/call | XLA flags | processes "
           "| compile s (from cache) | train images/s | vs first | ms/step | eval images/s "
           "| % of peak |", "|---" * 14 + "|"]
  for row in rows:
    steps = row["results"]["steps_per_call"] if "results" in row else row["steps"]
    settings = [row["name"], row["config"], row["dtype"], str(row["seeds"]),
                row["layout"] if row["seeds"] > 1 else "-", str(steps), row["flags"],
                str(row["processes"])]
    if "error" in row:
      lines.append("| " + " | ".join(settings + [f"failed: {row['error']}"] + ["-"] * 5) + " |")
      continue
    r = row["results"]
    peak = r["fraction_of_peak"]
    lines.append("| " + " | ".join(settings + [
        f"{r['compile_seconds']:.1f} ({r['programs_from_compilation_cache']})",
        f"{row['train_images_per_second']:,.0f}",
        f"{row['train_images_per_second'] / baseline['train_images_per_second']:.2f}x",
        f"{r['ms_per_step']:.2f}", f"{r['eval_images_per_second']:,.0f}",
        "-" if peak is None else f"{100 * peak * row['processes']:.0f}"]) + " |")
  device = baseline["results"]["device_kind"] if baseline else "?"
  return "\n".join([f"Device: {device}. Images/s count every seed's (and process's) images.", "",
                    *lines])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="folder for sweep.json and sweep.md")
  parser.add_argument("--budget_s", type=float, default=450,
                      help="start no candidate after this many seconds")
  parser.add_argument("--dry_run", action="store_true", help="tiny widths, for CPU")
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  for name in ("sweep.json", "sweep.md"):
    if os.path.exists(os.path.join(args.out, name)):
      parser.error(f"{os.path.join(args.out, name)} exists; not overwriting it.")
  start, rows = time.perf_counter(), []
  with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cache_dir:
    for name, changes in CANDIDATES:
      if time.perf_counter() - start > args.budget_s:
        print(f"Budget spent: skipped {name} and the rest.", flush=True)
        break
      rows.append(measure(name, {**BASE, **changes}, folder, args.dry_run, cache_dir))
      print(f"{name}: {rows[-1].get('train_images_per_second', rows[-1].get('error'))}",
            flush=True)
      with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump(rows, f, indent=2)
      with open(os.path.join(args.out, "sweep.md"), "w") as f:
        f.write(markdown(rows) + "\n")
  print(markdown(rows))


if __name__ == "__main__":
  main()
