"""A sweep: a grid of float hyperparameters x seeds in one program, each run its single run."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import vgg19_att
from ltpa_jax.data import datasets
from ltpa_jax.base import errors
from ltpa_jax.training import experiment
from ltpa_jax.training import grid
from ltpa_jax.core import memory
from ltpa_jax.core import optim
from ltpa_jax import report
from ltpa_jax.rundir import results
from ltpa_jax.base import stopping
from ltpa_jax.analysis import studies
from ltpa_jax.training import loop as train
from ltpa_jax.rundir import workdir as workdir_lib
from tests import exact
from tests.test_replicas import final_state
from tests.test_replicas import history

GRID = {"learning_rate": (0.1, 0.05), "weight_decay": (5e-4, 1e-2)}


@pytest.mark.slow
def test_a_sweep_stopped_and_resumed_is_each_runs_single_run(fake_dataset, tmp_path, monkeypatch,
                                                              x64):
  """A 2 x 2 grid x 2 seeds stopped after its first call (step 1 of 4), vmapped, then resumed
  with its runs' steps one after another ("loop"); each run alone, from its own config.json.

  Both layouts and the single runs: other programs, the same maths, proven in float64.
  """
  config = fake_dataset
  config.model.dtype = "float64"
  # What varies is the optimiser's: a plain VGG at width 1/32 compiles and runs faster.
  config.model.attention, config.model.width_multiplier = False, 1 / 32
  config.batch_size, config.eval_batch_size = 48, 50  # 96 images: 2 steps an epoch, 2 epochs
  workdir = tmp_path / "sweep"
  calls, wait = [], stopping.wait

  class StopAfterTheFirstCall(stopping.StopSignals):
    requested = property(lambda self: "SIGTERM" if calls else None, lambda self, value: None)

  with jax.threefry_partitionable(False):  # as test_replicas: only to compile faster
    with monkeypatch.context() as patch:
      patch.setattr(stopping, "StopSignals", StopAfterTheFirstCall)
      patch.setattr(stopping, "wait", lambda tree: calls.append(tree) or wait(tree))
      assert studies.train_sweep(config, str(workdir), GRID, [0, 1], seed_layout="vmap") is None
    runs = grid.runs(config, str(workdir), GRID, [0, 1])
    for path, _ in runs:
      assert os.listdir(os.path.join(path, "checkpoints")) == ["1"]
    table = studies.train_sweep(config, str(workdir), GRID, [0, 1], seed_layout="loop")
    alone = []
    for i, (path, _) in enumerate(runs):
      own = workdir_lib.read_config(os.path.join(path, "config.json"))
      alone.append(train.train_and_evaluate(own, str(tmp_path / f"alone_{i}")))

  differences = []
  for i, (path, run_config) in enumerate(runs):
    (step, state), (step_alone, state_alone) = (final_state(run_config, path),
                                                final_state(run_config, tmp_path / f"alone_{i}"))
    assert step == step_alone == 4
    exact.assert_trees_close(state, state_alone, atol=exact.noise_floor(state_alone))
    exact.assert_trees_close(history(path), history(tmp_path / f"alone_{i}"))
    floor = exact.noise_floor(state_alone)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state_alone)):
      a, b = np.asarray(a), np.asarray(b)
      if a.dtype.kind == "f":  # (absolute, the share of the tolerance rtol |b| + atol)
        gap = np.abs(a - b)
        differences.append((gap.max(), (gap / (exact.RTOL * np.abs(b) + floor)).max()))
    assert [h["learning_rate"] for h in history(path)] == pytest.approx(
        [run_config.learning_rate, run_config.learning_rate * run_config.lr_decay])
  absolute, share = np.max(differences, axis=0)
  print(f"A sweep run from its single run: at most {absolute:.3g} apart, {share:.3g} of the "
        "tolerance.")
  recorded = json.loads((workdir / "learning_rate=0.05,weight_decay=0.01" / "seed_1"
                         / "config.json").read_text())
  assert (recorded["learning_rate"], recorded["weight_decay"], recorded["seed"]) == (0.05, 0.01, 1)
  # Other values, other runs.
  params = [final_state(c, p)[1].params["classifier"]["kernel"] for p, c in runs[:4:2]]
  assert not np.allclose(*params)
  # The table: one row per grid point, its two seeds; the figure beside it.
  rows = [line for line in table.splitlines() if line.startswith("| 0.")]
  assert [row.split(" | ")[:3] for row in rows] == [
      ["| 0.1", "0.0005", "2"], ["| 0.1", "0.01", "2"], ["| 0.05", "0.0005", "2"],
      ["| 0.05", "0.01", "2"]]
  assert (workdir / "sweep.png").stat().st_size > 0
  assert (workdir / "sweep.md").read_text() == table.split("\n\nWritten to")[0] + "\n"
  # Finished: reprinted, not retrained; another grid in the same workdir is refused.
  again = studies.train_sweep(config, str(workdir), GRID, [0, 1])
  assert again == table.replace("\n\nWritten to", "\n\nRewritten from the runs' results:")
  with pytest.raises(errors.UserError, match="holds another sweep"):
    studies.train_sweep(config, str(workdir), {"learning_rate": (0.1,)}, [0, 1])


def test_the_grid_names_each_run_by_its_values_and_refuses_other_fields(tmp_path):
  parsed = grid.parse(["learning_rate=0.05,0.1", "weight_decay=1e-4,5e-4"])
  assert parsed == {"learning_rate": (0.05, 0.1), "weight_decay": (1e-4, 5e-4)}
  config = default.get_config()
  runs = grid.runs(config, "w", parsed, [0, 1])
  assert [path for path, _ in runs[:3]] == [
      "w/learning_rate=0.05,weight_decay=0.0001/seed_0",
      "w/learning_rate=0.05,weight_decay=0.0001/seed_1",
      "w/learning_rate=0.05,weight_decay=0.0005/seed_0"]
  last = runs[-1][1]
  assert (len(runs), last.learning_rate, last.weight_decay, last.seed) == (8, 0.1, 5e-4, 1)
  assert config.learning_rate == 0.1 and config.seed == 0  # the config itself untouched
  assert grid.runs(config, "w", {}, [3])[0][0] == "w/seed_3"  # replicas: seeds alone
  for specs, message in [(["batch_size=32,64"], "only learning_rate, weight_decay, momentum, "
                           "lr_decay can vary within one program"),
                         (["learning_rate=0.1,0.1"], "distinct values"),
                         (["momentum"], "give field=v1,v2"),
                         (["momentum=0.9", "momentum=0.8"], "given twice"),
                         (["lr_decay=a"], "must be numbers")]:
    with pytest.raises(errors.UserError, match=message):
      grid.parse(specs)
  grid.record(str(tmp_path), parsed, [0, 1])
  grid.record(str(tmp_path), parsed, [0, 1])  # the same sweep: resumed
  with pytest.raises(errors.UserError, match="holds another sweep"):
    grid.record(str(tmp_path), parsed, [0])


def test_each_runs_hyperparameters_as_values_give_its_own_optimiser(x64):
  """Momentum, weight decay, learning rate and its decay as vmapped values: each run's updates
  are those of an optimiser built with its numbers as constants, across a decay boundary."""
  config = default.get_config()
  config.lr_boundaries_epochs = (1,)
  points = [dict(learning_rate=0.1, weight_decay=1e-2, momentum=0.9, lr_decay=0.1),
            dict(learning_rate=0.03, weight_decay=0.0, momentum=0.5, lr_decay=0.5)]
  params = {"w": jnp.array([1.0, -2.0, 3.0])}
  grads = [{"w": jnp.array(g)} for g in ([0.5, 0.1, -0.3], [0.2, -0.4, 0.0], [-1.0, 0.3, 0.7])]

  def train(hparams):  # steps_per_pass 2: the learning rate decays at step 2
    tx = optim.sgd(optim.learning_rate_schedule(config, 2, hparams), hparams["momentum"],
                   hparams["weight_decay"])
    p, state = params, tx.init(params)
    for g in grads:
      updates, state = tx.update(g, state, p)
      p = jax.tree.map(jnp.add, p, updates)
    return p, state

  stacked = {k: jnp.array([point[k] for point in points]) for k in points[0]}
  together = jax.vmap(train)(stacked)
  for i, point in enumerate(points):
    constants = config.copy_and_resolve_references()
    constants.update(point)
    alone = train({k: constants[k] for k in optim.HYPERPARAMETERS})
    exact.assert_trees_close(jax.tree.map(lambda x, i=i: x[i], together), alone)
  assert optim.hyperparameters(constants, np.float64)["momentum"].dtype == np.float64


def _finished_run(path, config, final_top1):
  history = [dict(epoch=1, test_loss=2.0, test_top1_error=final_top1 + 5, test_top5_error=20.0),
             dict(epoch=2, test_loss=1.0, test_top1_error=final_top1, test_top5_error=10.0)]
  results.write(path, results.make(config, history, wall_seconds=1.0, images_per_second=1.0,
                                   dataset_label="CIFAR-100 (re-split)"))


@pytest.mark.parametrize("swept", [["learning_rate=0.05,0.1"],
                                   ["learning_rate=0.05,0.1", "weight_decay=1e-4,5e-4,1e-3"],
                                   ["learning_rate=0.05,0.1", "momentum=0.8,0.9", "lr_decay=0.2"]])
def test_report_of_a_sweep_a_row_per_grid_point_and_its_figure(tmp_path, capsys, swept):
  sweep_grid, workdir = grid.parse(swept), str(tmp_path / "sweep")
  grid.record(workdir, sweep_grid, [0, 1])
  runs = grid.runs(default.get_config(), workdir, sweep_grid, [0, 1])
  for i, (path, config) in enumerate(runs[:-1]):  # the last run unfinished
    _finished_run(path, config, final_top1=20.0 + i)
  report.main([workdir])
  lines = capsys.readouterr().out.splitlines()
  rows = [line for line in lines if line.startswith("| 0.")]
  assert len(rows) == len(runs) // 2
  assert rows[0].endswith("| 2 | 20.50 ± 0.71 | 10.00 ± 0.00 | 20.50 ± 0.71 | 10.00 ± 0.00 "
                          "| 20.50 ± 0.71 | 10.00 ± 0.00 |")  # final, best epoch, best each
  last = f"{20.0 + len(runs) - 2:.2f} | 10.00"
  assert rows[-1].endswith(f"| 1 | {last} | {last} | {last} |")  # one seed finished
  written = f"{os.path.join(workdir, 'sweep.md')} and {os.path.join(workdir, 'sweep.png')}."
  assert lines[-1] == f"Written to {written}"
  assert f"Not finished (1): {runs[-1][0]}" in lines
  assert os.path.getsize(os.path.join(workdir, "sweep.png")) > 0
  report.main([workdir])  # again: says it replaced them
  assert capsys.readouterr().out.splitlines()[-1] == f"Rewritten from the runs' results: {written}"


def test_runs_past_the_devices_memory_are_refused_before_compiling_naming_how_many_fit():
  """VGG19-att: 20.1M params, 2.34M conv outputs an image; 2.68 GB a run at batch 64."""
  config = vgg19_att.get_config()
  built = experiment.build(config, make_dataset=lambda c: datasets.Dataset(
      c.dataset, datasets.dataset_info(c.dataset), "CIFAR-100", None, 45000))
  assert memory.conv_outputs(built.model, (32, 32, 3)) == 2_338_624
  each = memory.per_run_bytes(built)
  assert each == int(2 * 4 * 20_140_580 + 64 * memory.ACTIVATION_COPIES * 4 * 2_338_624)
  memory.check_fits(built, 22, capacity=60 * 10**9)
  with pytest.raises(errors.UserError, match=r"23 runs need about 61.5 GB .* at most 22 runs"):
    memory.check_fits(built, 23, capacity=60 * 10**9)
  memory.check_fits(built, 10**6)  # on a CPU, whose memory JAX does not report: no check
