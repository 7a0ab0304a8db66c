"""Traces training steps of the benchmark with jax.profiler and summarises where the time goes.

    python benchmarks/profile_steps.py --out $OUT                     # on the GPU: 2 calls x 10
    python benchmarks/profile_steps.py --out /tmp/profile --dry_run   # on CPU: tiny, 1-step calls

Runs `ltpa_jax.analysis.speed.run` (synthetic data; --config, bfloat16 unless --dtype, --model
field=value overrides such as attention_narrow_sums=True) inside `jax.profiler.trace` and reads
the trace.json.gz (chrome trace format) it writes. Kernels: the trace's events that name an HLO
op (`args.hlo_op`), on the device's streams (or, on CPU, XLA's thunks), innermost only (a while
loop's thunk holds its body's); only those of the training program (the HLO module with "train"
in its name, else the one with most kernel time). Writes to --out: trace/ (the profile, for
TensorBoard's or xprof's viewer), profile.json and profile.md: time by kind (convolutions
forward and backward, the latter named bw/dgrad/wgrad on GPU (XLA:CPU's convolutions all count
as forward), fusions, copies and transposes, collectives, other; idle = the program's span on a
device less its kernels' union), the 20 kernels with most total time, and kernels per step.
"""

from __future__ import annotations

import argparse
import ast
import collections
import glob
import gzip
import json
import os
import re
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("convolution forward", "convolution backward", "fusion", "copy/transpose", "collective",
         "other", "idle")
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective", "all-to-all", "nccl")


def kind(name: str) -> str:
  """The kind of a kernel, from its HLO op and kernel names."""
  name = name.lower()
  if any(c in name for c in _COLLECTIVES):
    return "collective"
  if re.search(r"conv(?!ert)|fprop|dgrad|wgrad", name):
    backward = any(b in name for b in ("bw", "dgrad", "wgrad", "backward"))
    return "convolution backward" if backward else "convolution forward"
  if "copy" in name or "transpose" in name:
    return "copy/transpose"
  return "fusion" if "fusion" in name else "other"


def kernels(trace: dict) -> list[dict]:
  """The innermost events naming an HLO op, on device processes if the trace has any."""
  processes = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
               if e.get("ph") == "M" and e.get("name") == "process_name"}
  devices = {pid for pid, name in processes.items() if name.startswith("/device:")}
  events = sorted((e for e in trace["traceEvents"] if e.get("ph") == "X"
                   and "hlo_op" in e.get("args", {}) and (not devices or e["pid"] in devices)),
                  key=lambda e: (e["pid"], e["tid"], e["ts"], -e["dur"]))
  inner = []
  for e in events:  # drop an event that holds the next one on its thread
    if inner and (inner[-1]["pid"], inner[-1]["tid"]) == (e["pid"], e["tid"]) and (
        e["ts"] + e["dur"] <= inner[-1]["ts"] + inner[-1]["dur"]):
      inner.pop()
    inner.append(e)
  return inner


def summarise(trace: dict, steps: int) -> dict:
  """Time by kind (ms, with idle), the 20 kernels with most total time, kernels per step."""
  events = kernels(trace)
  if not events:
    raise ValueError("The trace holds no kernels (no events naming an HLO op).")
  by_module = collections.Counter()
  for e in events:
    by_module[e["args"].get("hlo_module", "?")] += e["dur"]
  train = [m for m in by_module if "train" in m] or [by_module.most_common(1)[0][0]]
  events = [e for e in events if e["args"].get("hlo_module", "?") in train]
  times = dict.fromkeys(KINDS, 0.0)
  top = collections.defaultdict(lambda: [0, 0.0])
  for e in events:
    name = e["name"]
    times[kind(f"{e['args']['hlo_op']} {e['name']}")] += e["dur"] / 1e3
    top[(e["args"]["hlo_op"], name)][0] += 1
    top[(e["args"]["hlo_op"], name)][1] += e["dur"] / 1e3
  for pid in {e["pid"] for e in events}:  # idle: the span less the union of its kernels
    busy, end = 0.0, None
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e["pid"] == pid)
    for start, stop in spans:
      if end is None or start > end:
        busy, end = busy + stop - start, stop
      elif stop > end:
        busy, end = busy + stop - end, stop
    times["idle"] += (spans[-1][1] - spans[0][0] - busy) / 1e3 if spans else 0.0
  longest = sorted(top.items(), key=lambda item: -item[1][1])[:20]
  return {"modules": sorted(train), "steps": steps, "kernels": len(events),
          "kernels_per_step": len(events) / steps, "ms_by_kind": times,
          "longest": [{"hlo_op": op, "kernel": name, "kind": kind(f"{op} {name}"), "calls": n,
                       "total_ms": ms, "mean_us": 1e3 * ms / n}
                      for (op, name), (n, ms) in longest]}


def markdown(summary: dict, title: str) -> str:
  total = sum(summary["ms_by_kind"].values())
  lines = [f"# {title}", "", f"Training program {', '.join(summary['modules'])}: "
           f"{summary['kernels']} kernels in {summary['steps']} steps, "
           f"{summary['kernels_per_step']:.1f} per step.", "",
           "| kind | ms | % |", "|---|---|---|"]
  lines += [f"| {k} | {ms:.2f} | {100 * ms / total:.1f} |"
            for k, ms in summary["ms_by_kind"].items()]
  lines += ["", "| kernel (HLO op) | kind | calls | total ms | mean us |", "|---|---|---|---|---|"]
  lines += [f"| {r['hlo_op']}{'' if r['kernel'] == r['hlo_op'] else ' (' + r['kernel'][:60] + ')'}"
            f" | {r['kind']} | {r['calls']} | {r['total_ms']:.2f} | {r['mean_us']:.1f} |"
            for r in summary["longest"]]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="folder for trace/, profile.json, profile.md")
  parser.add_argument("--config", default="configs/vgg19_att.py")
  parser.add_argument("--dtype", default="bfloat16")
  parser.add_argument("--model", action="append", default=[], help="field=value, model fields")
  parser.add_argument("--steps", type=int, default=10, help="steps per call (one lax.scan)")
  parser.add_argument("--calls", type=int, default=2, help="traced calls, the first a warm-up")
  parser.add_argument("--dry_run", action="store_true", help="CPU: width 1/16, 5 calls of 1 step")
  args = parser.parse_args()
  if os.path.exists(os.path.join(args.out, "profile.json")):
    parser.error(f"{args.out}/profile.json exists; not overwriting it.")
  sys.path.insert(0, ROOT)
  import jax  # pylint: disable=import-outside-toplevel
  from ltpa_jax.analysis import speed  # pylint: disable=import-outside-toplevel
  config = runpy.run_path(os.path.join(ROOT, args.config))["get_config"]()
  config.model.dtype = args.dtype
  for override in args.model:
    field, value = override.split("=", 1)
    setattr(config.model, field, ast.literal_eval(value))
  if args.dry_run:
    config.model.width_multiplier, config.batch_size, config.eval_batch_size = 1 / 16, 8, 16
    args.steps, args.calls = 1, 5
  folder = os.path.join(args.out, "trace")
  options = jax.profiler.ProfileOptions()
  options.python_tracer_level = 0  # Python's calls (compilation's) would fill the trace buffer
  with jax.profiler.trace(folder, profiler_options=options):
    results = speed.run(config, args.steps, args.calls - 1, 1, 1, "vmap", {})
  paths = glob.glob(os.path.join(folder, "plugins", "profile", "*", "*.trace.json.gz"))
  with gzip.open(max(paths, key=os.path.getmtime)) as f:
    summary = summarise(json.load(f), args.calls * args.steps)
  summary["device_kind"] = results["device_kind"]
  summary["train_images_per_second"] = results["train_images_per_second"]
  title = (f"Profile: {' '.join([args.config, args.dtype, *args.model])} on "
           f"{results['device_kind']}, batch {config.batch_size}")
  with open(os.path.join(args.out, "profile.json"), "w") as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(args.out, "profile.md"), "w") as f:
    f.write(markdown(summary, title))
  print(markdown(summary, title))


if __name__ == "__main__":
  main()
