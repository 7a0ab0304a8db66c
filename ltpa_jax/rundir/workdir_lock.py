"""One command at a time per workdir: a lock file that names its holder.

Every command that writes into a run (train, replicas, table, robustness) holds its workdir's
lock, `held(workdir)`, while it works; a second command on that workdir ends at once with a
`WorkdirLockedError` naming the holder (host, PID, since when). The lock is
`<workdir>/lock.json` ({"host", "pid", "since"}), held by an flock that the kernel drops when
its process ends, however it ends. A lock file left behind by a killed process is taken over,
with a note, when its holder was on this host; one left by another host is refused with the
way to clear it (the holder may still run there: only a person can tell). On a filesystem without
file locks only the PID in the file tells: a file that names no holder yet is refused unless this
command made it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time

from ltpa_jax.base import errors

LOCK_FILE = "lock.json"


class WorkdirLockedError(errors.UserError):
  """Another command holds the workdir, or may (its lock came from another host)."""


@contextlib.contextmanager
def held(*workdirs: str):
  """Holds the lock of each of `workdirs` (made if absent) while the block runs."""
  with contextlib.ExitStack() as stack:
    for workdir in workdirs:
      stack.enter_context(_held(workdir))
    yield


def make_workdir(workdir: str) -> str:
  """Makes the folder `workdir` (and its parents) unless it exists; UserError where a file stands
  in the way."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.UserError(f"Workdir {workdir} is a file, not a folder: give a new folder or a "
                           "run's folder as --workdir.")
  try:
    os.makedirs(workdir, exist_ok=True)
  except (FileExistsError, NotADirectoryError):
    parent = os.path.dirname(os.path.abspath(workdir))
    while not os.path.exists(parent):
      parent = os.path.dirname(parent)
    raise errors.UserError(f"Cannot make workdir {workdir}: {parent} is a file, not a folder. "
                           "Give a workdir whose parents are folders.") from None
  return workdir


@contextlib.contextmanager
def _held(workdir: str):
  path = os.path.join(make_workdir(workdir), LOCK_FILE)
  fd = _acquire(workdir, path)
  try:
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):  # deleted by hand
      os.remove(path)  # before the flock goes: a command that opened it then sees it gone
    os.close(fd)


def _acquire(workdir: str, path: str) -> int:
  """The open lock file `path`, flocked and naming this process."""
  while True:
    fd, made = _open(path)
    try:
      locked = _flock(fd)
      holder = _read(fd)
      if locked is False:
        raise WorkdirLockedError(_in_use(workdir, holder))
      if locked is None and holder is None and not made:  # its maker may be writing it
        raise WorkdirLockedError(
            f"Workdir {workdir} is in use by another command that is starting, or that ended "
            f"while starting: this filesystem has no file locks to tell which. If no command "
            f"runs on it, delete {path}, then run this command again.")
      if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
        if holder is not None:
          _take_over(workdir, path, holder, flocked=locked)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_this_process()).encode(), 0)
        os.fsync(fd)
        return fd
    except BaseException:
      os.close(fd)
      raise
    os.close(fd)  # a holder released (removed) the file between open and flock: again


def _open(path: str) -> tuple[int, bool]:
  """`path` opened read-write, made if absent, and whether this call made it."""
  while True:
    try:
      return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
      pass
    with contextlib.suppress(FileNotFoundError):  # its holder removed it since: again
      return os.open(path, os.O_RDWR), False


def _flock(fd: int) -> bool | None:
  """Takes the flock of `fd`: True, False if another process holds it, None if the filesystem
  has no locks."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except BlockingIOError:
    return False
  except OSError as e:
    if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
      return None
    raise


def _read(fd: int) -> dict | None:
  """The holder recorded in the lock file (None: empty, being written, or unreadable)."""
  try:
    holder = json.loads(os.pread(fd, 4096, 0) or b"null")
  except ValueError:
    return None
  return holder if isinstance(holder, dict) else None


def _this_process() -> dict:
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def _take_over(workdir: str, path: str, holder: dict, flocked: bool | None):
  """Takes over the lock file of a command that ended without removing it (it held no flock: it
  ended, if it ran on this host); raises where that cannot be told."""
  host, pid, since = holder.get("host"), holder.get("pid"), holder.get("since")
  if host != socket.gethostname():
    raise WorkdirLockedError(
        f"Workdir {workdir} is locked by PID {pid} on host {host}, since {since}. If no command "
        f"runs on it there (check on {host}), delete {path}, then run this command again.")
  if not flocked and _alive(pid):  # no locks on this filesystem: the PID tells
    raise WorkdirLockedError(_in_use(workdir, holder))
  print(f"Workdir {workdir}: taking over the lock of PID {pid} (since {since}), which ended "
        "without releasing it.", flush=True)


def _alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, TypeError, ValueError):
    return True  # another user's process, or a PID that cannot be checked
  return True


def _in_use(workdir: str, holder: dict | None) -> str:
  who = ("another command that is starting" if holder is None else
         f"another command: PID {holder.get('pid')} on host {holder.get('host')}, since "
         f"{holder.get('since')}")
  return (f"Workdir {workdir} is in use by {who}. Wait for it to end (or stop it: Ctrl-C saves a "
          "run), then run this command again.")
