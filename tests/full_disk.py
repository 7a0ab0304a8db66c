"""A full disk for one checkpoint: `fail_save_of(step)` makes orbax's writes into that step's
temporary folder raise ENOSPC, as a full disk does in the middle of a save.

    python -m tests.full_disk STEP ARGS...   # python -m ltpa_jax ARGS..., the save of STEP failing
"""

import errno
import os
import runpy
import sys

from etils import epath


def fail_save_of(step: int, monkeypatch=None):
  """From now on (until `monkeypatch` undoes it, if given), in this process, the checkpoint of
  SGD step `step` finds the disk full."""
  path_class = type(epath.Path("/"))
  write_text = path_class.write_text

  def full(self, *args, **kwargs):
    if f"/{step}.orbax-checkpoint-tmp" in os.fspath(self):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
    return write_text(self, *args, **kwargs)

  (monkeypatch.setattr if monkeypatch else setattr)(path_class, "write_text", full)


if __name__ == "__main__":
  fail_save_of(int(sys.argv.pop(1)))
  runpy.run_module("ltpa_jax", run_name="__main__", alter_sys=True)
