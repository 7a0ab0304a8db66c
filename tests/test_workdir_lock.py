"""workdir_lock: one command per workdir; a lock left by a dead process is taken over, one from
another host is explained; the commands that write into runs hold it before any work. (Two
processes at once, and a resume after SIGKILL: tests/test_reliability.py.)"""

import errno
import fcntl
import json
import os
import re
import socket
import subprocess

import pytest

from configs import tiny
from ltpa_jax.analysis import fgsm
from ltpa_jax.analysis import studies
from ltpa_jax.data import datasets
from ltpa_jax.base import errors
from ltpa_jax.training import loop as train
from ltpa_jax.rundir import workdir as workdir_lib
from ltpa_jax.rundir import workdir_lock


def write_lock(workdir, host, pid):
  workdir.mkdir(exist_ok=True)
  (workdir / workdir_lock.LOCK_FILE).write_text(json.dumps(
      {"host": host, "pid": pid, "since": "2026-01-02 03:04:05 UTC"}))


def dead_pid() -> int:
  process = subprocess.Popen(["true"])
  process.wait()
  return process.pid


def test_a_held_workdir_refuses_a_second_holder_naming_the_first(tmp_path):
  workdir = tmp_path / "new" / "run"
  with workdir_lock.held(str(workdir)):
    holder = json.loads((workdir / workdir_lock.LOCK_FILE).read_text())
    assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match=f"^Workdir {workdir} is in use by another command: PID {os.getpid()} "
                             f"on host {re.escape(socket.gethostname())}, since "
                             f"{re.escape(holder['since'])}\\. Wait for it to end"):
      with workdir_lock.held(str(tmp_path / "other"), str(workdir)):
        pass
    assert not (tmp_path / "other" / workdir_lock.LOCK_FILE).exists()  # released on refusal
  assert os.listdir(workdir) == []  # the lock goes with its holder
  with workdir_lock.held(str(workdir)):
    pass


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over_with_a_note(tmp_path, capsys):
  pid = dead_pid()
  write_lock(tmp_path, socket.gethostname(), pid)
  with workdir_lock.held(str(tmp_path)):
    assert json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
  assert capsys.readouterr().out == (
      f"Workdir {tmp_path}: taking over the lock of PID {pid} (since 2026-01-02 03:04:05 UTC), "
      "which ended without releasing it.\n")


STARTING = "is in use by another command that is starting"
UNREADABLE = (b"", b'{"host": "node')  # its writer between creating and writing it, or mid-write


@pytest.mark.parametrize("content", UNREADABLE)
def test_a_holder_not_yet_readable_is_waited_for_while_it_holds_the_flock(tmp_path, content):
  """The writer flocks the file it made before writing itself there: a command that finds the
  file unreadable and flocked refuses; once the writer is gone (killed while writing), it takes
  the file over."""
  lock = tmp_path / workdir_lock.LOCK_FILE
  lock.write_bytes(content)
  with open(lock, "rb") as writer:
    fcntl.flock(writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(workdir_lock.WorkdirLockedError, match=f"^Workdir {tmp_path} {STARTING}\\. "
                                                              "Wait for it to end"):
      with workdir_lock.held(str(tmp_path)):
        pass
    assert lock.read_bytes() == content  # left to its writer
  with workdir_lock.held(str(tmp_path)):
    assert json.loads(lock.read_text())["pid"] == os.getpid()


@pytest.fixture(params=[errno.ENOLCK, errno.EOPNOTSUPP], ids=["ENOLCK", "EOPNOTSUPP"])
def no_file_locks(monkeypatch, request):
  """A filesystem without file locks: flock fails as it does there."""

  def flock(fd, operation):
    raise OSError(request.param, os.strerror(request.param))

  monkeypatch.setattr(fcntl, "flock", flock)


def test_without_file_locks_a_live_holder_of_this_host_is_refused_and_a_dead_one_replaced(
    no_file_locks, tmp_path, capsys):  # pylint: disable=unused-argument
  workdir = tmp_path / "run"
  with workdir_lock.held(str(workdir)):
    with pytest.raises(workdir_lock.WorkdirLockedError,
                       match=f"^Workdir {workdir} is in use by another command: PID "
                             f"{os.getpid()} "):
      with workdir_lock.held(str(workdir)):
        pass
  assert os.listdir(workdir) == []  # released
  write_lock(workdir, socket.gethostname(), os.getppid())  # alive while this test runs
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match=f"^Workdir {workdir} is in use by another command: PID {os.getppid()} "):
    with workdir_lock.held(str(workdir)):
      pass
  pid = dead_pid()
  write_lock(workdir, socket.gethostname(), pid)
  with workdir_lock.held(str(workdir)):
    assert json.loads((workdir / workdir_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
  assert capsys.readouterr().out == (
      f"Workdir {workdir}: taking over the lock of PID {pid} (since 2026-01-02 03:04:05 UTC), "
      "which ended without releasing it.\n")


@pytest.mark.parametrize("content", UNREADABLE)
def test_without_file_locks_a_holder_not_yet_readable_is_refused_with_the_way_out(
    no_file_locks, tmp_path, content):  # pylint: disable=unused-argument
  """Only the command that made the file may write itself there: another cannot tell a writer
  at work from one that ended, and says how to clear the file if none runs."""
  lock = tmp_path / workdir_lock.LOCK_FILE
  lock.write_bytes(content)
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match=f"^Workdir {tmp_path} {STARTING}, or that ended while starting: this "
                           f"filesystem has no file locks to tell which\\. If no command runs on "
                           f"it, delete {lock}, then run this command again\\.$"):
    with workdir_lock.held(str(tmp_path)):
      pass
  assert lock.read_bytes() == content  # left to its writer
  lock.unlink()
  with workdir_lock.held(str(tmp_path)):
    assert json.loads(lock.read_text())["pid"] == os.getpid()


def test_a_lock_from_another_host_says_how_to_clear_it(tmp_path):
  write_lock(tmp_path, "node-7", 4242)
  lock = tmp_path / workdir_lock.LOCK_FILE
  with pytest.raises(workdir_lock.WorkdirLockedError,
                     match=f"^Workdir {tmp_path} is locked by PID 4242 on host node-7, since "
                           f"2026-01-02 03:04:05 UTC\\. If no command runs on it there \\(check "
                           f"on node-7\\), delete {lock}, then run this command again\\.$"):
    with workdir_lock.held(str(tmp_path)):
      pass
  assert json.loads(lock.read_text())["host"] == "node-7"  # left as it was


def test_a_workdir_that_is_a_file_or_lies_under_one_is_one_line(tmp_path):
  file = tmp_path / "notes.txt"
  file.write_text("")
  with pytest.raises(errors.UserError, match=f"^Workdir {file} is a file, not a folder: give a "
                                             "new folder or a run's folder as --workdir\\.$"):
    workdir_lock.make_workdir(str(file))
  with pytest.raises(errors.UserError, match=f"^Cannot make workdir {file}/runs/a: {file} is a "
                                             "file, not a folder\\."):
    workdir_lock.make_workdir(str(file / "runs" / "a"))


def test_every_command_that_writes_into_runs_refuses_a_held_workdir_before_any_work(
    fake_dataset, tmp_path, monkeypatch):
  """train (one run, or seeds: each seed's workdir), table (its workdir) and robustness (each
  run's workdir) refuse before reading data or compiling (the fake dataset would load, and a
  run compile, in seconds)."""
  run, seeds = tmp_path / "run", tmp_path / "seeds"
  refused = pytest.raises(workdir_lock.WorkdirLockedError, match="is in use by another command")
  with workdir_lock.held(str(run)), refused:
    train.train_and_evaluate(fake_dataset, str(run))
  assert os.listdir(run) == []  # no config.json recorded
  with workdir_lock.held(str(seeds / "seed_1")), refused:
    train.train_and_evaluate(fake_dataset, str(seeds), seeds=[0, 1])
  assert not (seeds / "seed_0").exists()  # seed 0's lock released, the folder it made removed
  monkeypatch.setattr(datasets, "ensure_prepared", lambda *args: None)  # "fake" is in memory
  with workdir_lock.held(str(tmp_path / "table")), refused:
    studies.train_table({"tiny": fake_dataset}, str(tmp_path / "table"), seeds=[0])
  assert os.listdir(tmp_path / "table") == []
  config = tiny.get_config()
  workdir_lib.check_same_config(str(run), config)
  with workdir_lock.held(str(run)), refused:
    fgsm.measure([str(run)], [0.0], str(tmp_path / "robustness.png"))
  assert sorted(os.listdir(run)) == [workdir_lib.CONFIG_FILE]
