"""Stop signals: SIGTERM or a first Ctrl-C request a save; a second Ctrl-C ends the process."""

import os
import signal

import jax.numpy as jnp
import numpy as np

from ltpa_jax.base import stopping


def test_sigterm_and_a_first_sigint_request_a_stop_and_handlers_come_back(capfd):
  before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
  with stopping.StopSignals() as stop:
    assert stop.requested is None
    os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next bytecode
    assert stop.requested == "SIGTERM"
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_DFL
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.requested == "SIGTERM"  # the first signal names the stop
    assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL  # a second Ctrl-C: default, at once
  assert {sig: signal.getsignal(sig) for sig in before} == before
  out = capfd.readouterr().out
  assert "SIGTERM: saving a checkpoint after the current call, then exiting." in out
  assert "SIGINT: saving a checkpoint after the current call, then exiting; Ctrl-C again quits " \
      "at once, without saving." in out


def test_without_announce_nothing_is_printed(capfd):
  with stopping.StopSignals(announce=False) as stop:
    os.kill(os.getpid(), signal.SIGINT)
  assert stop.requested == "SIGINT"
  assert capfd.readouterr().out == ""


def test_wait_returns_the_computed_tree():
  tree = {"x": jnp.arange(3) * 2}
  np.testing.assert_array_equal(stopping.wait(tree)["x"], [0, 2, 4])
