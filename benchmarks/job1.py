"""Job 1 of the GPU queue (benchmarks/GPU_QUEUE.md): its stages in priority order, in one call.

    python benchmarks/job1.py --out $OUT --work $KIT/job1 --data_dir $KIT/tfds         # the GPU
    python benchmarks/job1.py --out /tmp/job1 --work /tmp/job1_work \\
        --data_dir ../shared/tensorflow_datasets --dry_run                              # CPU

Stages (--stages; default all, in this order):
  profile     benchmarks/profile_steps.py: where a step of the baseline (vgg19_att, bfloat16,
              batch 64) spends its time: profile.md, profile.json; the trace in --out/trace.
  baseline    benchmarks/device_sweep.py's baseline rows (cold compile; restarted, from the
              compilation cache): sweep.md, sweep.json.
  peer        benchmarks/torch_peer.py: the reference's PyTorch loop, eager bf16 +
              channels_last, torch.compile max-autotune; the JAX figure beside it is the baseline
              stage's, same card, same call: torch_peer.json.
  candidates  benchmarks/device_sweep.py --resume: the sweep's other candidates (--candidates;
              default all) in its order, issue 29's first, while the budget lasts; the
              baseline first where this --work has none. A dry run measures two.
  acceptance  benchmarks/gpu_acceptance.py: the README's command trained, stopped by SIGTERM,
              resumed, exported and evaluated by evaluate_torch (needs --data_dir):
              acceptance.json, acceptance.log.

Every stage writes to --work (the profile's trace then moves to --out/trace). After each stage,
job1.json (each stage's command, exit status, wall seconds and last lines of output) and job1.tar
(--work's files) are written anew in --out, each by a rename: a call cut short returns all that
finished. A stage still running when --budget_s is spent is stopped (its files so far are kept).
Called again on the same machine with the stages left (the same --work), the job goes on: the
candidates continue the baseline's sweep.json; on a fresh machine they measure their own
baseline first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("profile", "baseline", "peer", "candidates", "acceptance")
BASELINES = "baseline (cold compile);baseline, restarted (compile cache)"
# A dry run's candidates: issue 29's model fields together, and the widest command buffers.
DRY_RUN_CANDIDATES = "all candidates;widest command buffers"
# Seconds the candidates stage keeps for its last candidate (one cold compile and its timing).
CANDIDATE_SECONDS = 70


def command(stage: str, args: argparse.Namespace, left: float) -> list[str]:
  """The process of `stage`, given `left` seconds of the budget."""
  dry = ["--dry_run"] if args.dry_run else []
  work = args.work
  if stage == "profile":
    return ["benchmarks/profile_steps.py", "--out", work, *dry]
  if stage == "baseline":
    return ["benchmarks/device_sweep.py", "--out", work, "--only", BASELINES, *dry]
  if stage == "peer":
    return ["benchmarks/torch_peer.py", "--out", os.path.join(work, "torch_peer.json"), *dry]
  if stage == "candidates":
    chosen = args.candidates or (DRY_RUN_CANDIDATES if args.dry_run else "")
    only = ["--only", BASELINES + ";" + chosen] if chosen else []
    return ["benchmarks/device_sweep.py", "--out", work, "--resume", *only,
            f"--budget_s={max(left - CANDIDATE_SECONDS, 0):.0f}", *dry]
  return ["benchmarks/gpu_acceptance.py", "--out", work, "--data_dir", args.data_dir, *dry]


def run(command: list[str], seconds: float) -> tuple[int | str, str]:
  """Runs `command` (in its own process group) for at most `seconds`: (exit status or
  "stopped after N s", its output's last 3,000 characters)."""
  print("$ " + " ".join(command), flush=True)
  child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
  try:
    output, _ = child.communicate(timeout=max(seconds, 1))
    status: int | str = child.returncode
  except subprocess.TimeoutExpired:
    os.killpg(child.pid, signal.SIGKILL)
    output, _ = child.communicate()
    status = f"stopped after {seconds:.0f} s"
  print(output[-3000:], flush=True)
  return status, output[-3000:]


def bundle(work: str, out: str) -> None:
  """job1.json and job1.tar (--work's files) in `out`, each written by a rename."""
  shutil.copy(os.path.join(work, "job1.json"), os.path.join(out, "job1.json.part"))
  with tarfile.open(os.path.join(out, "job1.tar.part"), "w") as tar:
    for name in sorted(os.listdir(work)):
      tar.add(os.path.join(work, name), arcname=name)
  for name in ("job1.json", "job1.tar"):
    os.replace(os.path.join(out, name + ".part"), os.path.join(out, name))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="folder for job1.json, job1.tar and trace/")
  parser.add_argument("--work", required=True, help="the stages' folder, kept between calls")
  parser.add_argument("--data_dir", default=None, help="TFDS data_dir with CIFAR-100 (acceptance)")
  parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, run in "
                      f"this order: {', '.join(STAGES)}")
  parser.add_argument("--candidates", default="", help="the candidates stage's candidates "
                      "(device_sweep.py's names, separated by ';'; the baseline is measured "
                      "first where this call has none); default: all (a dry run: two)")
  parser.add_argument("--budget_s", type=float, default=540, help="seconds for all the stages")
  parser.add_argument("--dry_run", action="store_true", help="each stage's dry run, for CPU")
  args = parser.parse_args()
  stages = [s.strip() for s in args.stages.split(",") if s.strip()]
  if unknown := [s for s in stages if s not in STAGES]:
    parser.error(f"--stages: unknown {', '.join(unknown)}; the stages: {', '.join(STAGES)}")
  if "acceptance" in stages and not args.data_dir:
    parser.error("the acceptance stage needs --data_dir (CIFAR-100 in a TFDS data_dir)")
  os.makedirs(args.out, exist_ok=True)
  os.makedirs(args.work, exist_ok=True)
  summary_path = os.path.join(args.work, "job1.json")
  summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {"stages": {}}
  start = time.perf_counter()
  for stage in (s for s in STAGES if s in stages):
    left = args.budget_s - (time.perf_counter() - start)
    stage_start, arguments = time.perf_counter(), command(stage, args, left)
    status, output = (run([sys.executable, *arguments], left) if left > 0
                      else ("not started: budget spent", ""))
    summary["stages"][stage] = {"command": arguments, "status": status,
                                "wall_seconds": round(time.perf_counter() - stage_start, 1),
                                "output_tail": output}
    if stage == "profile" and os.path.isdir(os.path.join(args.work, "trace")):
      shutil.move(os.path.join(args.work, "trace"), os.path.join(args.out, "trace"))
    with open(summary_path, "w") as f:
      json.dump(summary, f, indent=2)
    bundle(args.work, args.out)
    print(f"[job1] {stage}: {status} in "
          f"{summary['stages'][stage]['wall_seconds']} s", flush=True)


if __name__ == "__main__":
  main()
