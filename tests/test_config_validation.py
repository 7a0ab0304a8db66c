"""validate(): every problem of a config reported at once, before anything is compiled."""

import importlib
import pathlib

import ml_collections
import pytest

from ltpa_jax.config import validation as config_validation
from ltpa_jax import default_config
from ltpa_jax.config.validation import CHOICES, ConfigError, validate

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
                 if p.stem != "__init__")


def _config(changes: dict, delete: tuple = ()) -> ml_collections.ConfigDict:
  """The default config with dotted `changes` set (any type) and `delete` removed."""
  tree = default_config.get_config().to_dict()

  def parent(path):
    *parents, key = path.split(".")
    node = tree
    for name in parents:
      node = node[name]
    return node, key

  for path, value in changes.items():
    node, key = parent(path)
    node[key] = value
  for path in delete:
    node, key = parent(path)
    del node[key]
  return ml_collections.ConfigDict(tree)


def _problems(config, num_devices: int = 1) -> tuple[str, ...]:
  with pytest.raises(ConfigError) as error:
    validate(config, num_devices)
  for problem in error.value.problems:
    assert problem in str(error.value)
  return error.value.problems


@pytest.mark.parametrize("name", CONFIGS)
def test_repo_configs_are_valid(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  config.lock()  # as train.py's --config flag hands it over
  validate(config)


def test_tables_name_fields_of_default():
  paths = set(config_validation._paths(default_config.get_config()))
  tables = (CHOICES, config_validation.RANGES, config_validation.ONLY_WITH)
  assert {path for table in tables for path in table} <= paths


def test_unknown_field_suggests_the_closest_name():
  config = default_config.get_config()
  config.model.normalization = "sigmoid"
  assert _problems(config) == (
      "config.model.normalization: unknown field; did you mean config.model.normalisation?",)


def test_unknown_field_suggests_the_same_name_at_another_level():
  config = default_config.get_config()
  config.dtype = "bfloat16"
  assert _problems(config) == ("config.dtype: unknown field; did you mean config.model.dtype?",)


def test_unknown_field_without_a_close_name_lists_the_known_fields():
  config = default_config.get_config()
  config.model.zzz = 1
  (problem,) = _problems(config)
  assert problem.startswith("config.model.zzz: unknown field; known fields of config.model: ")
  assert "normalisation" in problem and "b2_convs" in problem


def test_missing_field():
  assert _problems(_config({}, delete=("model.dtype",))) == (
      "config.model.dtype: missing field (default_config.py sets 'float32')",)


@pytest.mark.parametrize("path, value, expected", [
    ("batch_size", "64", "expected int, got str '64'"),
    ("batch_size", 64.0, "expected int, got float 64.0"),
    ("batch_size", True, "expected int, got bool True"),
    ("eval_batch_size", None, "expected int, got NoneType None"),
    ("model.attention", 1, "expected bool, got int 1"),
    ("learning_rate", "0.1", "expected float (or int), got str '0.1'"),
    ("data_dir", 3, "expected str or None, got int 3"),
    ("model.attended_layers", "123", "expected tuple (or list) of int, got str '123'"),
    ("lr_boundaries_epochs", (50.5,), "expected tuple (or list) of int, got tuple (50.5,)"),
    ("model", "vgg", "expected a ConfigDict of model fields, got str 'vgg'"),
    ("model.attn_features", 128.0, "expected int, got float 128.0"),
])
def test_wrong_type(path, value, expected):
  assert _problems(_config({path: value})) == (f"config.{path}: {expected}",)


@pytest.mark.parametrize("path, value", [
    ("learning_rate", 1), ("model.width_multiplier", 2), ("data_dir", "/data"),
    ("manual_dir", None), ("model.attended_layers", [2, 3]), ("lr_boundaries_epochs", []),
])
def test_accepted_type(path, value):
  validate(_config({path: value}))


@pytest.mark.parametrize("path", sorted(set(CHOICES) - {"model.attended_layers"}))
def test_unknown_choice(path):
  (problem,) = _problems(_config({path: "nonsense"}))
  assert problem.startswith(f"config.{path}: got 'nonsense'; allowed: ")
  assert all(repr(choice) in problem for choice in CHOICES[path])


def test_dataset_choices_are_the_datasets():
  (problem,) = _problems(_config({"dataset": "cifar1000"}))
  assert problem == ("config.dataset: got 'cifar1000'; allowed: "
                     "'cifar100', 'cifar10', 'svhn_cropped', 'fashion_mnist'")


@pytest.mark.parametrize("layers", [(), (1, 1), (0, 2), (1, 2, 3, 4)])
def test_attended_layers_must_be_a_subset(layers):
  assert _problems(_config({"model.attended_layers": layers})) == (
      f"config.model.attended_layers: got {layers!r}; must be a non-empty subset of 1, 2, 3 "
      "without duplicates",)


@pytest.mark.parametrize("path, value, allowed", [
    ("batch_size", 0, "> 0"),
    ("eval_batch_size", -1000, "> 0"),
    ("num_epochs", 0, "> 0"),
    ("learning_rate", 0.0, "> 0"),
    ("passes_per_epoch", 0, "> 0"),
    ("eval_every_epochs", 0, "> 0"),
    ("model.width_multiplier", 0.0, "> 0"),
    ("model.b2_convs", 0, ">= 1"),
    ("lr_decay", 0.0, "in (0, 1]"),
    ("lr_decay", 1.5, "in (0, 1]"),
    ("momentum", 1.0, "in [0, 1)"),
    ("momentum", -0.1, "in [0, 1)"),
    ("weight_decay", -1e-4, ">= 0"),
    ("steps_per_call", -1, ">= 0"),
])
def test_out_of_range(path, value, allowed):
  assert _problems(_config({path: value})) == (f"config.{path}: got {value!r}; must be {allowed}",)


@pytest.mark.parametrize("path, value", [
    ("lr_decay", 1.0), ("momentum", 0.0), ("weight_decay", 0.0), ("steps_per_call", 0),
    ("model.b2_convs", 1),
])
def test_range_bounds_that_are_allowed(path, value):
  validate(_config({path: value}))


def test_lr_step_epochs_is_checked_only_for_the_step_schedule():
  validate(_config({"lr_step_epochs": 0}))
  assert _problems(_config({"lr_schedule": "step", "lr_step_epochs": 0})) == (
      "config.lr_step_epochs: got 0; must be > 0 with lr_schedule='step'",)


@pytest.mark.parametrize("boundaries, reasons, fix", [
    ((50, 70, 100), "100 outside the run", "'--config.lr_boundaries_epochs=(50, 70)'"),
    ((0, 50), "0 outside the run", "'--config.lr_boundaries_epochs=(50,)'"),
    ((70, 50), "not increasing", "'--config.lr_boundaries_epochs=(50, 70)'"),
    ((50, 50, 120), "120 outside the run; not increasing", "'--config.lr_boundaries_epochs=(50,)'"),
    ((100,), "100 outside the run", "'--config.lr_boundaries_epochs=()'"),
])
def test_lr_boundaries_outside_the_run(boundaries, reasons, fix):
  """The fix named is a flag for the shell (test_cli_errors runs one)."""
  assert _problems(_config({"lr_boundaries_epochs": boundaries})) == (
      f"config.lr_boundaries_epochs: got {boundaries!r} ({reasons}); with "
      f"lr_schedule='piecewise' they must increase, each in (0, num_epochs=100), e.g. {fix}",)


@pytest.mark.parametrize("changes, expected", [
    ({"model.shared_u": True}, "config.model.shared_u: got True with model.attention_type='grid'; "
     "grid gates are per layer: set model.shared_u=False"),
    ({"model.compatibility": "dp"}, "config.model.compatibility: got 'dp' with "
     "model.attention_type='grid'; grid gates compute their own additive scores: set "
     "model.compatibility='pc' (the default, which grid ignores)"),
], ids=["shared_u", "dp"])
def test_grid_attention_refuses_shared_u_and_dp(changes, expected):
  assert _problems(_config({"model.attention_type": "grid", **changes})) == (expected,)
  validate(_config(changes))  # linear attention takes both
  validate(_config({"model.attention_type": "grid", "model.attention": False, **changes}))


def test_attn_features_is_checked_only_for_grid_attention():
  validate(_config({"model.attn_features": 0}))
  assert _problems(_config({"model.attention_type": "grid", "model.attn_features": 0})) == (
      "config.model.attn_features: got 0; must be >= 1 with model.attention_type='grid'",)


def test_lr_boundaries_are_ignored_by_the_step_schedule():
  validate(_config({"lr_schedule": "step", "lr_boundaries_epochs": (500,)}))


def test_batch_sizes_must_split_over_the_devices():
  validate(_config({"batch_size": 64, "eval_batch_size": 1000}), num_devices=8)
  assert _problems(_config({"batch_size": 100, "eval_batch_size": 3}), num_devices=8) == (
      "config.batch_size: 100 does not split over 8 devices (data parallel); use a multiple of 8, "
      "e.g. 96 or 104",
      "config.eval_batch_size: 3 does not split over 8 devices (data parallel); use a multiple "
      "of 8, e.g. 8",
  )


def test_bad_num_devices():
  with pytest.raises(ValueError, match="num_devices must be a positive int, got 0"):
    validate(default_config.get_config(), num_devices=0)


def test_all_problems_are_reported_together():
  config = _config({"batch_size": "64", "model.dtype": "float16", "momentum": 1.0,
                    "model.normalization": "softmax", "lr_boundaries_epochs": (50, 120)},
                   delete=("seed",))
  problems = _problems(config)
  with pytest.raises(ConfigError, match=r"^Invalid config \(6 problems\):\n  config\.batch_size"):
    validate(config)
  assert [p.split(":")[0] for p in problems] == [
      "config.batch_size", "config.lr_boundaries_epochs", "config.model.dtype",
      "config.model.normalization", "config.momentum", "config.seed"]


def test_new_default_fields_are_picked_up(monkeypatch):
  get_config = default_config.get_config

  def extended():
    config = get_config()
    config.model.dropout = 0.5
    return config

  monkeypatch.setattr(config_validation.default_config, "get_config", extended)
  assert _problems(get_config()) == (
      "config.model.dropout: missing field (default_config.py sets 0.5)",)
  assert _problems(_config({"model.dropout": "0.5"})) == (
      "config.model.dropout: expected float (or int), got str '0.5'",)
  validate(extended())


def test_normalisation_statistics_need_one_number_per_channel():
  assert _problems(_config({"data_mean": (0.5, 0.5), "data_std": (0.2, 0.0, 0.2)})) == (
      "config.data_mean: got (0.5, 0.5); cifar100 images have 3 channels: give 3 numbers, e.g. "
      "'--config.data_mean=(0.5071, 0.4865, 0.4409)' (the dataset's own), or None",
      "config.data_std: got (0.2, 0.0, 0.2); cifar100 images have 3 channels: give 3 positive "
      "numbers, e.g. '--config.data_std=(0.2673, 0.2564, 0.2762)' (the dataset's own), or None")
  validate(_config({"data_mean": (0.5, 0.4, 0.3), "data_std": (0.2, 0.2, 0.2)}))
