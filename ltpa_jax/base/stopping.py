"""Stopping a run: SIGTERM or a first Ctrl-C asks it to save and exit; a second Ctrl-C exits at once.

Python runs signal handlers in the main thread between bytecodes, so a main thread blocked inside
XLA would hear a signal only when the call ends. `wait` therefore blocks in a helper thread while
the main thread waits on a lock, where handlers run at once.
"""

import concurrent.futures
import os
import signal
import threading

import jax


class StopSignals:
  """Within `with StopSignals() as stop:`, `stop.requested` names the first SIGTERM or SIGINT
  received (None before). The first SIGINT restores the default action, so a second one ends the
  process at once. With `announce`, each says on stdout what happens next. Previous handlers come
  back on exit. Outside the main thread it installs nothing and `requested` stays None."""

  def __init__(self, announce: bool = True):
    self.requested: str | None = None
    self._announce = announce
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    name = signal.Signals(signum).name
    self.requested = self.requested or name
    message = f"{name}: saving a checkpoint after the current call, then exiting"
    if signum == signal.SIGINT:
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      message += "; Ctrl-C again quits at once, without saving"
    if self._announce:  # os.write: a handler may interrupt a print
      os.write(1, f"\n{message}.\n".encode())


_WAITER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ltpa_jax_wait")


def wait(tree):
  """`jax.block_until_ready(tree)`, waited for in a way that lets signal handlers run (in one
  helper thread, kept for every call: on CPU this runs after every SGD step)."""
  return _WAITER.submit(jax.block_until_ready, tree).result()
