"""The table of config fields: the defaults, docs/config.md, the model's settings and old runs'
configs all come from it."""

import dataclasses
import json
import pathlib
import shutil

import pytest

from ltpa_jax import default_config
from ltpa_jax.config import fields
from ltpa_jax.config import validation as config_validation
from ltpa_jax.model import models
from ltpa_jax.rundir import workdir
from ltpa_jax.training import loop as train

REPO = pathlib.Path(__file__).resolve().parents[1]
# A run of configs/tiny.py (fake Fashion-MNIST, width 1/32, batch 10: 3 steps an epoch) made with
# main 006ed2a's code, the last before the table, and stopped by a SIGTERM after its first epoch.
OLD_RUN = REPO / "tests" / "fixtures" / "run_006ed2a"


def _leaves(tree: dict, prefix: str = "") -> list[str]:
  return [path for key, value in tree.items() for path in (
      _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key])]


def test_the_defaults_hold_each_field_of_the_table_once():
  paths = [f.path for f in fields.FIELDS]
  assert len(set(paths)) == len(paths)
  config = default_config.get_config()
  assert sorted(_leaves(config.to_dict())) == sorted(paths)
  for field in fields.FIELDS:
    *sections, name = field.path.split(".")
    node = config
    for section in sections:
      node = node[section]
    assert node[name] == field.default
    assert node.get_type(name) is (field.kind or type(field.default))


def test_docs_config_md_is_the_table():
  written = (REPO / "docs" / "config.md").read_text()
  assert written == fields.markdown(), (
      f"docs/config.md differs from ltpa_jax/config/fields.py; regenerate it: {fields.REGENERATE}")


def test_the_reference_names_each_fields_values_and_history():
  lines = {line.split(" | ")[0]: line for line in fields.markdown().splitlines()}
  assert lines["| `model.attention_type`"].endswith(
      "| 'linear', 'grid' | 'linear' in runs recorded before it |")
  assert "| `None or str` |" in lines["| `data_dir`"]
  assert lines["| `model.init_scheme`"].endswith("| formerly `init` |")
  assert ">= 1 (checked only with model.attention_type='grid')" in lines["| `model.attn_features`"]


def test_validation_checks_the_tables_rules():
  config = default_config.get_config()
  config.model.attention_type, config.model.attn_features = "grid", 0
  with pytest.raises(config_validation.ConfigError) as error:
    config_validation.validate(config)
  assert error.value.problems == (
      "config.model.attn_features: got 0; must be >= 1 with model.attention_type='grid'",)
  assert config_validation.CHOICES["model.attention_type"] is models.ATTENTION_TYPES


def _other_value(field: fields.Field):
  """A valid value of a model field other than its default."""
  if field.choices is not None:
    if isinstance(field.default, tuple):
      return field.default[1:]
    return next(c for c in field.choices if c != field.default)
  if isinstance(field.default, bool):
    return not field.default
  return field.default * 2 if isinstance(field.default, int) else field.default / 2


def test_the_model_takes_each_model_field_by_name_with_the_same_default():
  model_fields = [f for f in fields.FIELDS if f.path.startswith("model.")]
  settings = {f.name for f in dataclasses.fields(models.VGGAttention)} - {
      "num_classes", "parent", "name"}
  assert {f.path[len("model."):] for f in model_fields} == settings
  built, direct = models.create_model(default_config.get_config().model, 7), models.VGGAttention(7)
  assert {s: getattr(built, s) for s in settings} == {s: getattr(direct, s) for s in settings}
  config = default_config.get_config()
  for field in model_fields:
    config.model[field.path[len("model."):]] = _other_value(field)
  model = models.create_model(config.model, 7)
  for name, value in config.model.items():
    assert getattr(model, name) == (models.DTYPES[value] if name == "dtype" else value), name
  assert model.num_classes == 7


@pytest.mark.parametrize("field", [f for f in fields.FIELDS
                                   if f.before is not fields.ALWAYS or f.old_names],
                         ids=lambda f: f.path)
def test_a_run_recorded_before_a_field_or_under_its_old_name_reads_in_current_terms(field):
  current = workdir.config_dict(default_config.get_config())
  *sections, name = field.path.split(".")
  old = json.loads(json.dumps(current))
  node = old
  for section in sections:
    node = node[section]
  value = node.pop(name)
  if field.old_names:
    node[field.old_names[0]] = value
  else:
    current_node = current
    for section in sections:
      current_node = current_node[section]
    current_node[name] = field.before
  assert workdir.upgraded(old) == current


@pytest.mark.slow
def test_a_run_stopped_by_main_006ed2a_resumes_and_finishes(prepared_fake_data, tmp_path, capsys):
  """As `python -m ltpa_jax --config RUN/config.json --workdir RUN --config.data_dir=...`."""
  run = tmp_path / "run"
  shutil.copytree(OLD_RUN, run)
  recorded = (run / "config.json").read_text()
  config = workdir.read_config(str(run / "config.json"))
  config.lock()
  config.data_dir = prepared_fake_data
  results = train.train_and_evaluate(config, str(run))
  assert f"Resuming {run} at step 3 (epoch 2)." in capsys.readouterr().out
  assert results["final"]["epoch"] == 2
  history = json.loads((run / "history.json").read_text())
  assert history[:1] == json.loads((OLD_RUN / "history.json").read_text())
  assert [h["epoch"] for h in history] == [1, 2]
  assert "6" in {p.name for p in (run / "checkpoints").iterdir()}
  assert (run / "config.json").read_text() == recorded
