"""report: runs grouped by config over seeds, mean ± sample std, beside the reference."""

import math
import pathlib

import pytest

from configs import default
from ltpa_jax import report
from ltpa_jax.analysis import stats
from ltpa_jax.analysis import tables
from ltpa_jax.rundir import results


def _run_dir(root, name, seed, final, best, attention=True, data_dir=None):
  """A finished run's workdir: final and best-on-test (top-1, top-5) errors at epochs 3 and 2."""
  config = default.get_config()
  config.seed, config.data_dir, config.model.attention = seed, data_dir, attention
  history = [
      dict(epoch=1, train_loss=3.0, train_error=80.0, test_loss=3.0, test_top1_error=99.0,
           test_top5_error=99.0),
      dict(epoch=2, train_loss=2.0, train_error=60.0, test_loss=2.0, test_top1_error=best[0],
           test_top5_error=best[1]),
      dict(epoch=3, train_loss=1.0, train_error=50.0, test_loss=2.2, test_top1_error=final[0],
           test_top5_error=final[1]),
  ]
  made = results.make(config, history, wall_seconds=10.0, images_per_second=1000.0 * (seed + 1),
                      dataset_label="CIFAR-100 (re-split)")
  workdir = root / name
  results.write(str(workdir), made)
  return str(workdir)


def test_mean_and_sample_std():
  assert stats.mean_std([25.0]) == (25.0, None)
  mean, std = stats.mean_std([25.0, 27.0, 29.0])
  assert mean == 27.0 and math.isclose(std, 2.0)  # sqrt((4 + 0 + 4) / 2)
  assert stats.format_mean_std([25.0, 26.0]) == "25.50 ± 0.71"  # sqrt(0.5)
  assert stats.format_mean_std([25.0]) == "25.00"
  assert stats.format_mean_std([7.17, None]) == "-"


def test_table_of_two_seeds_and_a_single_run(tmp_path, capsys):
  dirs = [
      _run_dir(tmp_path, "att_s0", 0, final=(25.0, 7.0), best=(24.0, 6.5), data_dir="/a"),
      _run_dir(tmp_path, "att_s1", 1, final=(27.0, 8.0), best=(25.0, 7.5), data_dir="/b"),
      _run_dir(tmp_path, "vgg_s0", 0, final=(28.0, 9.0), best=(27.5, 8.75), attention=False),
  ]
  report.main(dirs)
  table = capsys.readouterr().out
  rows = [line for line in table.splitlines() if line.startswith("| CIFAR-100 (re-split) |")]
  assert len(rows) == 2  # seed and data_dir do not split a config
  att, vgg = rows
  # final top-1: mean 26, std sqrt(((25-26)^2 + (27-26)^2) / 1) = 1.41; top-5: 7.5 ± 0.71;
  # best epoch: 24.5 ± 0.71 and 7.0 ± 0.71, and (one evaluated epoch) best each the same;
  # images/s: (1000 + 2000) / 2.
  assert ("| VGG19-att (softmax, separate u) | b2 2 convs, wd 5e-5, 100 epochs | - | 2 | 0, 1 "
          "| 26.00 ± 1.41 | 7.50 ± 0.71 | 24.50 ± 0.71 | 7.00 ± 0.71 | 24.50 ± 0.71 | 7.00 ± 0.71 "
          "| 1,500 |") in att
  assert ("| VGG19 | b2 2 convs, wd 5e-5, 100 epochs | - | 1 | 0 "
          "| 28.00 | 9.00 | 27.50 | 8.75 | 27.50 | 8.75 |") in vgg
  header = next(line for line in table.splitlines() if line.startswith("| dataset |"))
  assert ("| final top-1 | final top-5 | best-epoch top-1 | its top-5 | best-each top-1 | "
          "best-each top-5 |") in header
  assert table.splitlines()[table.splitlines().index(header) + 1].count("|---") == 14
  # The reference, whole, with its own mean ± std and notes (tests/test_reference.py).
  assert ("| VGG19 | b2 3 convs, batch 64, wd 1e-4, lr x0.1 at 50/70/90 | 1b1af30 (1b1af30) | "
          "`vgg19` | 3 | 26.13 ± 0.23 | 7.16 ± 0.22 |") in table
  assert "| `vgg19_att_sigmoid` | 3 | 25.46 ± 0.42 | 6.66 ± 0.12 |" in table
  assert "| paper: VGG-att3-concat-pc | 300 epochs | Jetley et al. 2018 | - | 1 | 22.97 |" in table
  assert "hard-coded `attention = True`" in table


def test_settings_that_differ_are_named(tmp_path):
  dirs = [_run_dir(tmp_path, "a", 0, (25.0, 7.0), (24.0, 6.5))]
  config_b = tmp_path / "b"
  made = results.read(dirs[0])
  made["config"]["batch_size"] = 128
  results.write(str(config_b), made)
  table = tables.markdown([results.read(d) for d in dirs + [str(config_b)]])
  assert "| batch_size=64 |" in table and "| batch_size=128 |" in table


def test_grid_attention_is_named_in_the_model_column(tmp_path):
  linear = _run_dir(tmp_path, "a", 0, (25.0, 7.0), (24.0, 6.5))
  made = results.read(linear)
  made["config"]["model"]["attention_type"] = "grid"
  results.write(str(tmp_path / "grid"), made)
  table = tables.markdown([results.read(linear), results.read(str(tmp_path / "grid"))])
  assert "| VGG19-att grid (softmax) | b2 2 convs" in table
  assert "| VGG19-att (softmax, separate u) | b2 2 convs" in table and "attention_type=" not in table


def test_unfinished_runs_and_non_runs_are_skipped_and_a_run_counts_once(tmp_path, capsys):
  finished = _run_dir(tmp_path, "a", 0, (25.0, 7.0), (24.0, 6.5))
  unfinished = tmp_path / "b"
  unfinished.mkdir()
  (unfinished / "config.json").write_text("{}")
  (tmp_path / "plots").mkdir()
  (tmp_path / "notes.txt").write_text("")
  report.main([finished, str(unfinished), str(tmp_path / "plots"), str(tmp_path / "notes.txt"),
               finished + "/", str(tmp_path / "a" / "results.json")])
  out, err = capsys.readouterr()
  assert err.splitlines() == [
      f"Skipped {unfinished}: unfinished (no results.json yet).",
      f"Skipped {tmp_path / 'plots'}: not a run (no config.json).",
      f"Skipped {tmp_path / 'notes.txt'}: not a run (a file).",
      f"Skipped {finished}/: the same run as {finished}.",
      f"Skipped {tmp_path / 'a' / 'results.json'}: the same run as {finished}.",
  ]
  (row,) = [line for line in out.splitlines() if line.startswith("| CIFAR-100 (re-split) |")]
  assert "| 1 | 0 | 25.00 | 7.00 |" in row


def test_a_results_json_that_cannot_be_read_is_skipped_naming_it(tmp_path, capsys):
  finished = _run_dir(tmp_path, "a", 0, (25.0, 7.0), (24.0, 6.5))
  truncated = _run_dir(tmp_path, "b", 1, (25.0, 7.0), (24.0, 6.5))
  path = pathlib.Path(truncated) / "results.json"
  path.write_text(path.read_text()[:100])
  other = tmp_path / "c" / "results.json"
  other.parent.mkdir()
  other.write_text('{"final": {}}')
  report.main([finished, truncated, str(other)])
  out, err = capsys.readouterr()
  skipped = err.splitlines()
  assert len(skipped) == 2 and "Traceback" not in err, err
  assert skipped[0].startswith(f"Skipped {truncated}: {path} cannot be read (Unterminated"), err
  assert skipped[1].startswith(f"Skipped {other}: {other} is not a run's results (it lacks "
                               "config, seed,"), err
  (row,) = [line for line in out.splitlines() if line.startswith("| CIFAR-100 (re-split) |")]
  assert "| 1 | 0 | 25.00 | 7.00 |" in row


def test_no_finished_run_is_one_line_and_exit_status_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_:
    report.main([str(tmp_path)])
  assert exit_.value.code == 2
  assert capsys.readouterr().err == (
      "error: None of the given paths holds a finished run (a workdir with results.json). "
      f"Skipped {tmp_path}: not a run (no config.json).\n")


def test_reduced_runs_get_their_own_table(tmp_path):
  full = _run_dir(tmp_path, "full", 0, (25.0, 7.0), (24.0, 6.5))
  made = results.read(full)
  made["config"]["model"]["width_multiplier"] = 1 / 16
  made["config"]["train_examples"] = 640
  made["config"]["num_epochs"] = 2
  results.write(str(tmp_path / "tiny"), made)
  made["config"]["model"]["width_multiplier"] = 1.0
  made["config"]["train_examples"] = 0
  results.write(str(tmp_path / "short"), made)
  table = tables.markdown([results.read(full), results.read(str(tmp_path / "tiny")),
                           results.read(str(tmp_path / "short"))])
  runs, reduced = table.split("## Reduced runs")[0], table.split("## Reduced runs")[1]
  assert runs.count("| CIFAR-100 (re-split) |") == 1 and "100 epochs | - | 1 | 0 |" in runs
  reduced = reduced.split("## PyTorch reference")[0]
  assert "| CIFAR-100 (re-split) | width 1/16, 640 train examples, 2 epochs |" in reduced
  assert "| CIFAR-100 (re-split) | 2 epochs |" in reduced
  assert "model.width_multiplier=" not in table and "train_examples=" not in table
