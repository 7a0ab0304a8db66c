"""Issues 14's and 29's speed candidates, measured in one device call on synthetic data.

    python benchmarks/device_sweep.py --out $OUT             # on the GPU (~8 minutes)
    python benchmarks/device_sweep.py --out /tmp/sweep --dry_run   # on CPU: tiny widths

Each candidate (config x dtype x seeds trained together x seed layout x steps per call x XLA
flag set x model fields: BatchNorm's variance in one pass, issue 29's attention sums in bfloat16,
max-pools by reshape, convs before BatchNorm without bias) is one `python -m ltpa_jax.benchmark`
process, since XLA reads its flags when a process starts; "3 programs" runs three one-seed
processes at once and adds their images/s (their timed windows overlap, not exactly). Candidates
run in the order below while --budget_s lasts; after each, sweep.json and sweep.md in --out are
written anew, so a call stopped early still returns what it measured; --resume continues it. The
first two share a fresh compilation cache: the second's compile time is that of a restarted
run. The others compile without the cache (cold compile times).
Every candidate keeps the recipe's maths: batch 64, per-step BatchNorm statistics (in one pass:
E[x^2] - E[x]^2, the same maths with other rounding); each model field is the same maths in
float64 (tests/test_speed_candidates.py).

XLA's command buffers (`--xla_gpu_enable_command_buffer`, a list of DebugOptions'
CommandBufferCmdType names; empty: off): "default" is XLA's own list, "widest command buffers"
every name of the enum in the installed jaxlib (`command_buffer_types`). In jaxlib 0.10.2
(libjax_common.so) the enum holds INVALID, FUSION, CUBLAS, CUDNN, COLLECTIVES, CONDITIONAL, WHILE,
CUSTOM_CALL, CUBLASLT, DYNAMIC_SLICE_FUSION and CONVOLUTION (10 reserved, the former
DYNAMIC_SLICE_COPY_FUSION); XLA:CPU parses the flag too, so a dry run checks the names.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# jaxlib 0.10.2's CommandBufferCmdType names, less INVALID: used where no jaxlib library holds the
# enum's descriptor.
COMMAND_BUFFER_TYPES = ("FUSION", "CUBLAS", "CUDNN", "COLLECTIVES", "CONDITIONAL", "WHILE",
                        "CUSTOM_CALL", "CUBLASLT", "DYNAMIC_SLICE_FUSION", "CONVOLUTION")


def command_buffer_types() -> tuple[str, ...]:
  """The CommandBufferCmdType names (less INVALID) of the DebugOptions proto descriptor compiled
  into the installed XLA: a CUDA plugin's library, else jaxlib's; else COMMAND_BUFFER_TYPES."""
  import jaxlib  # pylint: disable=import-outside-toplevel
  site = os.path.dirname(os.path.dirname(jaxlib.__file__))
  for path in sorted(glob.glob(os.path.join(site, "jax_cuda*_plugin", "*.so"))) + [
      os.path.join(site, "jaxlib", "libjax_common.so")]:
    with open(path, "rb") as f:
      data = f.read()
    start = data.find(b"\x14CommandBufferCmdType\x12")
    if start < 0:
      continue
    # EnumValueDescriptorProto entries: 0x12 <len> 0x0a <name len> <name> 0x10 <number>.
    entry, names, position = re.compile(rb"\x12.\n.([A-Z_]+)\x10.", re.S), [], start + 21
    while match := entry.match(data, position):
      names.append(match[1].decode())
      position = match.end()
    return tuple(n for n in names if n != "INVALID")
  return COMMAND_BUFFER_TYPES


# XLA flag sets to compare with XLA's defaults.
FLAG_SETS = {
    "default": "",
    "latency hiding": "--xla_gpu_enable_latency_hiding_scheduler=true",
    "while-loop double buffering": "--xla_gpu_enable_while_loop_double_buffering=true",
    "no command buffers": "--xla_gpu_enable_command_buffer=",
    "widest command buffers": "--xla_gpu_enable_command_buffer={}",  # command_buffer_types()
}
BASE = {"config": "vgg19_att", "dtype": "bfloat16", "seeds": 1, "layout": "vmap",
        "steps": 100, "flags": "default", "processes": 1, "cache": None, "model": {}}
# Issue 29's model fields (each default off), tried alone and all together (with BatchNorm in one
# pass).
MODEL_CANDIDATES = {"attention sums in bfloat16": {"attention_narrow_sums": True},
                    "max-pools by reshape": {"max_pool_by_reshape": True},
                    "convs before BatchNorm without bias": {"conv_bias_free": True}}
ALL_MODEL_FIELDS = {"batchnorm_one_pass": True,
                    **{k: v for fields in MODEL_CANDIDATES.values() for k, v in fields.items()}}
# (name, changes to BASE), in order of priority.
CANDIDATES = (
    ("baseline (cold compile)", {"cache": "fresh"}),
    ("baseline, restarted (compile cache)", {"cache": "fresh"}),
    *((name, {"model": fields}) for name, fields in MODEL_CANDIDATES.items()),
    ("all candidates", {"model": ALL_MODEL_FIELDS}),
    ("no command buffers", {"flags": "no command buffers"}),
    ("widest command buffers", {"flags": "widest command buffers"}),
    ("all candidates, widest command buffers", {"model": ALL_MODEL_FIELDS,
                                                "flags": "widest command buffers"}),
    ("3 seeds vmapped", {"seeds": 3}),
    ("3 seeds looped", {"seeds": 3, "layout": "loop"}),
    ("3 programs at once", {"processes": 3}),
    ("vgg19", {"config": "vgg19"}),
    ("vgg19, 3 seeds vmapped", {"config": "vgg19", "seeds": 3}),
    ("latency hiding", {"flags": "latency hiding"}),
    ("while-loop double buffering", {"flags": "while-loop double buffering"}),
    ("391 steps per call", {"steps": 391}),
    ("BatchNorm in one pass", {"model": {"batchnorm_one_pass": True}}),
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
          *(f"--config.model.{name}={value}" for name, value in candidate["model"].items()),
          *(DRY_RUN_FLAGS if dry_run else [])]


def measure(name: str, candidate: dict, folder: str, dry_run: bool, cache_dir: str) -> dict:
  """Runs the candidate's benchmark process(es); returns its row: the candidate, and the
  benchmark's results (images/s summed over processes) or the error's last lines."""
  flags = FLAG_SETS[candidate["flags"]].format(",".join(command_buffer_types()))
  env = dict(os.environ, XLA_FLAGS=" ".join(
      f for f in (os.environ.get("XLA_FLAGS", ""), flags) if f))
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
  parser.add_argument("--resume", action="store_true", help="keep the rows of --out's "
                      "sweep.json and measure only the candidates it lacks")
  parser.add_argument("--only", default="", help="candidate names separated by ';' (names "
                      "hold commas): run only those, in CANDIDATES' order (default: all)")
  args = parser.parse_args()
  names = [name for name, _ in CANDIDATES]
  only = [name.strip() for name in args.only.split(";") if name.strip()]
  if unknown := [name for name in only if name not in names]:
    parser.error(f"--only: no candidate named {', '.join(unknown)}; the names: {', '.join(names)}")
  os.makedirs(args.out, exist_ok=True)
  rows, recorded = [], os.path.join(args.out, "sweep.json")
  if args.resume and os.path.exists(recorded):
    with open(recorded) as f:
      rows = json.load(f)
  elif os.path.exists(recorded) or os.path.exists(os.path.join(args.out, "sweep.md")):
    parser.error(f"{args.out} holds a sweep; not overwriting it (--resume continues it).")
  start, done = time.perf_counter(), {row["name"] for row in rows}
  with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as cache_dir:
    for name, changes in CANDIDATES:
      if (only and name not in only) or name in done:
        continue
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
