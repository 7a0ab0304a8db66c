"""Where a command computes, in words, and the warning for a recipe started on a CPU."""

import os
import types

import jax

from ltpa_jax.base import devices

# The main command on a 2-core CPU: 781 + 1 steps an epoch, 100 epochs, ~20 s a step.
RECIPE_STEPS = 78_200


def test_describes_the_devices_the_processes_and_the_dtype(monkeypatch):
  device = jax.devices()[0]
  assert devices.describe("float32") == (
      f"{len(jax.devices())} x {device.device_kind} ({device.platform}), 1 process, float32")
  assert devices.describe("bfloat16", 1) == (
      f"1 x {device.device_kind} ({device.platform}), 1 process, bfloat16")
  gpu = types.SimpleNamespace(device_kind="NVIDIA H200", platform="gpu")
  monkeypatch.setattr(jax, "devices", lambda: [gpu] * 4)
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert devices.describe("bfloat16") == "4 x NVIDIA H200 (gpu), 2 processes, bfloat16"


def test_the_tests_run_on_the_cpu_unless_told_otherwise():
  """tests/conftest.py pins JAX_PLATFORMS to cpu, unless it names platforms, before JAX starts a
  backend."""
  platforms = os.environ["JAX_PLATFORMS"]
  assert jax.config.jax_platforms == platforms
  if platforms == "cpu":
    assert jax.default_backend() == "cpu"
    assert devices.describe("float32", 1) == "1 x cpu (cpu), 1 process, float32"


def test_a_recipe_on_a_cpu_is_told_its_time_and_the_fix():
  warning = devices.cpu_warning("cpu", 1.0, 0, 20.0, RECIPE_STEPS)
  assert warning.startswith("warning: on this CPU the run would take about 18 days (20 s per "
                            "step, 78,200 steps). The recipes need a GPU or TPU")
  assert f"pip install 'jax[cuda12]=={jax.__version__}'" in warning
  assert "--config tiny" in warning and warning.endswith("Training goes on.")


def test_no_warning_for_an_accelerator_a_narrow_model_or_part_of_the_dataset():
  assert devices.cpu_warning("gpu", 1.0, 0, 20.0, RECIPE_STEPS) is None
  assert devices.cpu_warning("tpu", 1.0, 0, 20.0, RECIPE_STEPS) is None
  assert devices.cpu_warning("cpu", 1 / 16, 0, 20.0, RECIPE_STEPS) is None
  assert devices.cpu_warning("cpu", 1.0, 6400, 20.0, RECIPE_STEPS) is None


def test_durations_are_said_in_the_largest_unit_that_leaves_two():
  assert [devices.duration(s) for s in (59, 119, 120, 7199, 7200, 172_799, 172_800)] == [
      "59 seconds", "119 seconds", "2 minutes", "120 minutes", "2 hours", "48 hours", "2 days"]
