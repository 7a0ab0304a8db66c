"""benchmarks/profile_steps.py: its summary of a chrome trace, and its CPU dry run's table."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def profile_steps():
  spec = importlib.util.spec_from_file_location("profile_steps",
                                                ROOT / "benchmarks/profile_steps.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def event(name, ts, dur, module="jit_train_steps", pid=1, tid=1):
  return {"ph": "X", "pid": pid, "tid": tid, "ts": ts, "dur": dur, "name": name,
          "args": {"hlo_op": name, "hlo_module": module}}


def test_summary_counts_innermost_kernels_of_the_training_program_and_idle_time():
  trace = {"traceEvents": [
      {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
      {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
      event("while.1", 0, 100),  # holds the body's kernels: not counted
      event("cudnn-conv.1", 0, 10), event("cudnn-conv-bw-filter.2", 10, 20),
      event("add_convert_fusion", 40, 10), event("copy.3", 60, 5), event("transpose.4", 62, 8),
      event("all-reduce.5", 80, 20), event("add_convert_fusion", 1000, 1, module="jit_eval"),
      event("host_op", 0, 500, pid=2)]}  # on the host: not a device kernel
  summary = profile_steps().summarise(trace, steps=2)
  assert summary["modules"] == ["jit_train_steps"] and summary["kernels"] == 6
  assert summary["kernels_per_step"] == 3
  # Busy: [0, 30) + [40, 50) + [60, 70) + [80, 100) = 70 of the span [0, 100).
  assert summary["ms_by_kind"] == pytest.approx({  # float sums of microseconds / 1e3
      "convolution forward": 0.01, "convolution backward": 0.02, "fusion": 0.01,
      "copy/transpose": 0.013, "collective": 0.02, "other": 0.0, "idle": 0.03})
  assert [r["hlo_op"] for r in summary["longest"]][:2] == ["cudnn-conv-bw-filter.2", "all-reduce.5"]
  assert summary["longest"][0] | {"kind": "convolution backward", "calls": 1} == summary["longest"][0]


def assert_a_complete_table(folder: pathlib.Path):
  """What the CPU dry run of profile_steps.py wrote to `folder` (tests/test_gpu_job1.py runs it,
  as job 1's first stage): every kind, 20 kernels, 5 steps, percentages adding up to 100."""
  summary = json.loads((folder / "profile.json").read_text())
  module = profile_steps()
  assert list(summary["ms_by_kind"]) == list(module.KINDS)
  assert summary["ms_by_kind"]["convolution forward"] > 0 and summary["ms_by_kind"]["fusion"] > 0
  assert summary["steps"] == 5 and summary["kernels_per_step"] == summary["kernels"] / 5 > 10
  assert len(summary["longest"]) == 20
  totals = [r["total_ms"] for r in summary["longest"]]
  assert totals == sorted(totals, reverse=True)
  table = (folder / "profile.md").read_text().splitlines()
  assert table[4:6] == ["| kind | ms | % |", "|---|---|---|"] and len(table) == 4 + 2 + 7 + 1 + 2 + 20
  assert sum(float(line.split("|")[3]) for line in table[6:13]) == pytest.approx(100, abs=0.5)
