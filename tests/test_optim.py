"""SGD semantics (torch.optim.SGD) and epoch-based learning-rate schedules."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ltpa_jax.core import optim
from tests import exact


def schedule_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      learning_rate=0.1, lr_schedule="piecewise", lr_boundaries_epochs=(50, 70, 90),
      lr_step_epochs=25, lr_decay=0.1, passes_per_epoch=1, lr_scheduler_steps_first=False))
  config.update(overrides)
  return config


def test_piecewise_schedule_drops_tenfold_exactly_at_the_epoch_boundaries():
  """The float32 schedule of the runs: 0.1, up to 3 factors 0.1 and their products are rounded,
  at most 7 roundings of 2**-24 (6e-8): within 4.2e-7 < 1e-6 of the decimal values."""
  schedule = optim.learning_rate_schedule(schedule_config(), steps_per_pass=782)
  for step, lr in [(0, 0.1), (50 * 782 - 1, 0.1), (50 * 782, 0.01), (70 * 782 - 1, 0.01),
                   (70 * 782, 0.001), (90 * 782, 1e-4), (100 * 782, 1e-4)]:
    assert float(schedule(step)) == pytest.approx(lr, rel=1e-6), step


def test_step_schedule_halves_every_k_epochs_of_several_passes():
  config = schedule_config(lr_schedule="step", lr_step_epochs=25, lr_decay=0.5, passes_per_epoch=3)
  schedule = optim.learning_rate_schedule(config, steps_per_pass=391)
  epoch = 3 * 391
  assert float(schedule(25 * epoch - 1)) == pytest.approx(0.1)
  assert float(schedule(25 * epoch)) == pytest.approx(0.05)
  assert float(schedule(50 * epoch)) == pytest.approx(0.025)


@pytest.mark.parametrize("steps_first", [False, True])
def test_the_schedule_is_torch_multisteplr_stepped_as_the_reference_stepped_it(x64, steps_first):
  """main.py (1b1af30) calls scheduler.step() at the START of each epoch. PyTorch >= 1.1 (torch
  here) then skips the schedule's first value: decays after epochs 49/69/89
  (`lr_scheduler_steps_first`); PyTorch 1.0 decayed after 50/70/90 (the default), the same as
  stepping at each epoch's end. Every step's float64 rate equals torch's rate for its epoch."""
  torch = pytest.importorskip("torch")
  steps_per_epoch = 3
  schedule = optim.learning_rate_schedule(
      schedule_config(learning_rate=np.float64(0.1), lr_decay=np.float64(0.1),
                      lr_scheduler_steps_first=steps_first), steps_per_pass=steps_per_epoch)
  weight = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
  sgd = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
  scheduler = torch.optim.lr_scheduler.MultiStepLR(sgd, milestones=[50, 70, 90], gamma=0.1)
  ours, torch_rates = [], []
  for epoch in range(100):
    if steps_first:
      scheduler.step()  # the reference's place; torch warns it comes before optimizer.step()
    torch_rates += [sgd.param_groups[0]["lr"]] * steps_per_epoch
    ours += [schedule(epoch * steps_per_epoch + i) for i in range(steps_per_epoch)]
    sgd.step()
    if not steps_first:
      scheduler.step()
  ours = np.asarray(ours)
  exact.assert_trees_close(ours, np.asarray(torch_rates))
  print(f"largest difference from torch: {np.abs(ours - torch_rates).max():.3g}")
  decays = [i // steps_per_epoch for i in range(1, len(ours)) if ours[i] < ours[i - 1]]
  assert decays == ([49, 69, 89] if steps_first else [50, 70, 90])


def test_unknown_schedule_is_rejected():
  with pytest.raises(ValueError, match="lr_schedule"):
    optim.learning_rate_schedule(schedule_config(lr_schedule="cosine"), 10)


def test_sgd_matches_torch_sgd_with_coupled_weight_decay_and_momentum(x64):
  """torch.optim.SGD: d = g + wd * p; buf = m * buf + d (buf = d at step 1); p -= lr * buf.
  Float64 params against numpy's float64."""
  lr, momentum, wd = 0.1, 0.9, 1e-2
  tx = optim.sgd(lr, momentum, wd)
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  state = tx.init(params)
  p, buf = np.array([1.0, -2.0, 3.0]), None
  for grad in ([0.5, 0.1, -0.3], [0.2, -0.4, 0.0], [-1.0, 0.3, 0.7]):
    updates, state = tx.update({"w": jnp.array(grad)}, state, params)
    params = {"w": params["w"] + updates["w"]}
    d = np.array(grad) + wd * p
    buf = d if buf is None else momentum * buf + d
    p = p - lr * buf
    exact.assert_trees_close(params["w"], p)
