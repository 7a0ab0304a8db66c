"""The plan: every SGD step placed in its pass, epoch and call, from the step alone."""

import jax

from configs import tiny
from ltpa_jax.core import plan as plan_lib


def test_call_shapes_cover_every_example_once():
  plan = lambda n, batch, steps_per_call: plan_lib.Plan(n, batch, 1, 1, steps_per_call)
  assert plan(50_000, 64, 0).call_shapes() == [(781, 64), (1, 16)]
  assert plan(50_000, 64, 100).call_shapes() == [(100, 64), (81, 64), (1, 16)]
  assert plan(128, 64, 1).call_shapes() == [(1, 64)]
  assert plan(10, 64, 0).call_shapes() == [(1, 10)]


def test_the_plan_places_every_step_in_its_pass_epoch_and_call():
  """70 examples in batches of 16 (4 full + 6), 2 passes an epoch, 3 epochs, calls of 3 steps."""
  plan = plan_lib.Plan(70, 16, 2, 3, 3)
  assert (plan.steps_per_pass, plan.steps_per_epoch, plan.total_steps) == (5, 10, 30)
  calls, step = [], 0
  while step < plan.total_steps:
    calls.append(plan.call(step))
    step += calls[-1][2]
  assert calls[:4] == [(0, 0, 3), (0, 3, 1), (0, 4, 1), (1, 0, 3)]  # (pass, first, steps)
  assert sum(count for _, _, count in calls) == 30 and calls[-1] == (5, 4, 1)
  assert plan.call(7) == (1, 2, 2)  # resumed at step 2 of pass 2: up to its full batches
  assert [plan.images_in_epoch(s) for s in (0, 1, 4, 5, 6, 10)] == [0, 16, 64, 70, 86, 140]


def test_auto_steps_per_call_is_one_step_on_cpu_and_a_whole_pass_elsewhere():
  config = tiny.get_config()
  config.steps_per_call = 0
  expected = 1 if jax.default_backend() == "cpu" else 0
  assert plan_lib.for_config(config, 100).steps_per_call == expected
  config.steps_per_call = 8
  assert plan_lib.for_config(config, 100).steps_per_call == 8
