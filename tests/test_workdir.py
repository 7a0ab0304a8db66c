"""workdir: the recorded config guards a run's workdir; JSON files are written atomically."""

import json
import os
import re

import pytest

from configs import default
from ltpa_jax.base import errors
from ltpa_jax.rundir import workdir


def test_config_is_recorded_then_the_same_config_resumes(tmp_path):
  run = tmp_path / "run"
  workdir.check_same_config(str(run), default.get_config())
  recorded = json.loads((run / workdir.CONFIG_FILE).read_text())
  assert recorded["model"]["attended_layers"] == [1, 2, 3] and recorded["data_dir"] is None
  workdir.check_same_config(str(run), default.get_config())  # resume: passes


def test_another_config_on_an_existing_workdir_is_refused(tmp_path):
  workdir.check_same_config(str(tmp_path), default.get_config())
  config = default.get_config()
  config.model.attention = False
  config.weight_decay = 1e-4
  with pytest.raises(workdir.ConfigMismatchError,
                     match=r"another config \(model.attention: True -> False; "
                           r"weight_decay: 5e-05 -> 0.0001\). Use a new workdir .* resume that run "
                           r"with its own config: python -m ltpa_jax --config \S+/config.json "
                           r"--workdir \S+$"):
    workdir.check_same_config(str(tmp_path), config)


def test_a_recorded_config_reads_back_as_the_same_config(tmp_path):
  """What --config runs/x/config.json runs: a resume of that run, whose overrides still parse."""
  config = default.get_config()
  config.model.attended_layers = (2, 3)
  config.data_dir = "data"
  workdir.check_same_config(str(tmp_path), config)
  read = workdir.read_config(str(tmp_path / workdir.CONFIG_FILE))
  assert read.model.attended_layers == (2, 3) and read.get_type("manual_dir") is str
  workdir.check_same_config(str(tmp_path), read)  # accepted: the same config


def test_a_config_recorded_before_grid_attention_reads_and_resumes_as_linear(tmp_path):
  """Runs recorded without model.attention_type and model.attn_features (their `Field.before`)."""
  old = workdir.config_dict(default.get_config())
  del old["model"]["attention_type"], old["model"]["attn_features"]
  workdir.write_json(str(tmp_path / workdir.CONFIG_FILE), old)
  read = workdir.read_config(str(tmp_path / workdir.CONFIG_FILE))
  assert (read.model.attention_type, read.model.attn_features) == ("linear", 256)
  workdir.check_same_config(str(tmp_path), default.get_config())  # resumes: the same config
  workdir.check_same_config(str(tmp_path), read)
  grid = default.get_config()
  grid.model.attention_type = "grid"
  with pytest.raises(workdir.ConfigMismatchError, match="model.attention_type: 'linear' -> 'grid'"):
    workdir.check_same_config(str(tmp_path), grid)
  assert workdir.upgraded({"model": {"init": "xavier"}})["model"] == {
      "init_scheme": "xavier", "attention_type": "linear", "attn_features": 256,
      "batchnorm_one_pass": False, "attention_narrow_sums": False, "max_pool_by_reshape": False,
      "conv_bias_free": False}


def test_a_workdir_with_files_but_no_config_is_refused(tmp_path):
  (tmp_path / "notes.txt").write_text("someone else's")
  with pytest.raises(workdir.ConfigMismatchError, match="holds files but no config.json"):
    workdir.check_same_config(str(tmp_path), default.get_config())
  assert os.listdir(tmp_path) == ["notes.txt"]


def test_write_json_never_overwrites_unless_asked(tmp_path):
  path = tmp_path / "sub" / "data.json"
  workdir.write_json(str(path), {"a": 1})
  with pytest.raises(FileExistsError, match="data.json exists"):
    workdir.write_json(str(path), {"a": 2})
  assert json.loads(path.read_text()) == {"a": 1}
  workdir.write_json(str(path), {"a": 3}, overwrite=True)
  assert json.loads(path.read_text()) == {"a": 3}
  assert os.listdir(path.parent) == ["data.json"]  # no temporary file left behind


@pytest.mark.parametrize("text, problem", [('{"seed": 0', "cannot be read (Expecting"),
                                           ("[]", "holds a list, not a run's config")])
def test_a_config_json_that_is_not_a_config_is_named(tmp_path, text, problem):
  (tmp_path / "config.json").write_text(text)
  with pytest.raises(errors.UserError, match=f"^{tmp_path}/config.json {re.escape(problem)}"):
    workdir.check_same_config(str(tmp_path), default.get_config())
