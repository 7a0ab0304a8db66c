"""benchmarks/job1.py, the GPU queue's job 1: its CPU dry run brings back every stage's files
within the device's limits, and a call cut short keeps what finished."""

import json
import os
import pathlib
import subprocess
import sys
import tarfile

import pytest

from tests.test_benchmark import assert_issue_29s_candidates
from tests.test_profile_steps import assert_a_complete_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
# What the device tool brings back from $OUT: at most 8 files of at most 16 MiB.
MAX_FILES, MAX_BYTES = 8, 16 * 2**20


def job1(*flags, timeout):
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_THREEFRY_PARTITIONABLE="0",
             PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, "benchmarks/job1.py", *flags], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def returned(out: pathlib.Path) -> dict[str, int]:
  """The files under `out`, as the device tool would bring them back: {relative path: bytes}."""
  return {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_dry_run_brings_back_every_stages_files(tmp_path, cifar100_data_dir):
  pytest.importorskip("torch", reason="the peer stage runs PyTorch")
  # Here, not at the top: test_torch_peer skips its module without torch.
  from tests.test_torch_peer import assert_both_eager_modes  # pylint: disable=C0415
  out, work = tmp_path / "out", tmp_path / "work"
  result = job1("--out", str(out), "--work", str(work), "--data_dir", str(cifar100_data_dir),
                "--dry_run", "--budget_s", "1500", timeout=1800)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  summary = json.loads((out / "job1.json").read_text())
  assert list(summary["stages"]) == ["profile", "baseline", "peer", "candidates", "acceptance"]
  for stage, done in summary["stages"].items():
    assert done["status"] == 0, (stage, done["output_tail"])
  files = returned(out)
  assert len(files) <= MAX_FILES and max(files.values()) <= MAX_BYTES, files
  assert {"job1.json", "job1.tar"} <= set(files)
  assert any(name.startswith("trace/") and name.endswith(".trace.json.gz") for name in files)
  with tarfile.open(out / "job1.tar") as tar:
    assert {"job1.json", "profile.md", "profile.json", "sweep.md", "sweep.json",
            "torch_peer.json", "acceptance.json", "acceptance.log"} <= set(tar.getnames())
    tar.extractall(tmp_path / "back", filter="data")
  back = tmp_path / "back"
  assert_a_complete_table(back)
  assert_both_eager_modes(json.loads((back / "torch_peer.json").read_text()))
  rows = json.loads((back / "sweep.json").read_text())
  acceptance = json.loads((back / "acceptance.json").read_text())
  # The candidates continued the baseline stage's sweep: its two rows kept, then the dry run's two.
  assert [row["name"] for row in rows[:2]] == [
      "baseline (cold compile)", "baseline, restarted (compile cache)"]
  assert all(row["train_images_per_second"] > 0 for row in rows[:2]), rows
  assert_issue_29s_candidates(rows[2:])
  assert acceptance["stages"]["resume"]["exit_status"] == 0
  assert acceptance["stages"]["evaluate_torch"]["exit_status"] == 0


def test_a_spent_budget_stops_the_running_stage_and_keeps_what_came_before(tmp_path):
  out, work = tmp_path / "out", tmp_path / "work"
  (work / "earlier").mkdir(parents=True)
  (work / "earlier" / "sweep.json").write_text("[]")  # a file of a stage that finished
  result = job1("--out", str(out), "--work", str(work), "--stages", "profile,baseline",
                "--budget_s", "1", "--dry_run", timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((out / "job1.json").read_text())
  assert summary["stages"]["profile"]["status"] == "stopped after 1 s"
  assert summary["stages"]["baseline"]["status"] == "not started: budget spent"
  with tarfile.open(out / "job1.tar") as tar:
    assert "earlier/sweep.json" in tar.getnames()
  assert sorted(returned(out)) == ["job1.json", "job1.tar"]  # no .part left


def test_unknown_stages_and_acceptance_without_data_are_refused(tmp_path):
  flags = ("--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"))
  unknown = job1(*flags, "--stages", "profile,speed", timeout=60)
  assert unknown.returncode == 2
  assert "--stages: unknown speed; the stages: profile" in unknown.stderr
  no_data = job1(*flags, "--stages", "acceptance", timeout=60)
  assert no_data.returncode == 2 and "the acceptance stage needs --data_dir" in no_data.stderr
  assert not (tmp_path / "out").exists()
