"""Checks a config before anything is loaded or compiled, reporting every problem at once.

Fields and types come from `defaults.get_config()` (new fields are picked up automatically);
allowed values, ranges and "only with" rules from the table of fields (`fields.FIELDS`, whose
choices are the tuples of the modules that use them: `models`, `optim`, `datasets`). Types: ints
are accepted for floats, tuples or lists for sequences, None only where a field is a placeholder
(data_dir, manual_dir).
`model.b2_convs` may be any depth >= 1: the reference runs used 2 and 3, the model builds any.
Grid attention gates are per layer: `model.attention_type="grid"` refuses `model.shared_u=True`
and `model.compatibility="dp"`.
"""

from __future__ import annotations

import difflib
import numbers
import shlex
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections

from ltpa_jax.base import errors
from ltpa_jax.config import defaults as default_config
from ltpa_jax.data import datasets
from ltpa_jax.config import fields

# The tables of `fields.FIELDS`: allowed values (for a sequence field, a non-empty subset without
# duplicates), ranges, and fields checked only with a given value of another (an unused knob, the
# other schedule's or attn_features with linear attention, may be anything).
CHOICES = {f.path: f.choices for f in fields.FIELDS if f.choices is not None}
RANGES = {f.path: f.range for f in fields.FIELDS if f.range is not None}
ONLY_WITH = {f.path: f.only_with for f in fields.FIELDS if f.only_with is not None}


class ConfigError(errors.UserError, ValueError):
  """A config with problems; `problems` holds one message per problem."""

  def __init__(self, problems: list[str]):
    self.problems = tuple(problems)
    super().__init__(f"Invalid config ({len(problems)} problem{'s' * (len(problems) > 1)}):\n"
                     + "\n".join(f"  {p}" for p in problems))


def validate(config, num_devices: int = 1) -> None:
  """Raises `ConfigError` listing every problem of `config` for a run on `num_devices`."""
  if not isinstance(num_devices, int) or num_devices < 1:
    raise ValueError(f"num_devices must be a positive int, got {num_devices!r}")
  reference = default_config.get_config()
  problems, values = [], {}
  _check_fields(config, reference, "", _paths(reference), problems, values)
  for path, value in values.items():
    if path in ONLY_WITH and values.get(ONLY_WITH[path][0]) != ONLY_WITH[path][1]:
      continue
    if path in CHOICES:
      problems += _choice_problems(path, value, CHOICES[path])
    if path in RANGES and value not in RANGES[path]:
      condition = " with {}={!r}".format(*ONLY_WITH[path]) if path in ONLY_WITH else ""
      problems.append(f"config.{path}: got {value!r}; must be {RANGES[path]}{condition}")
    if path == "lr_boundaries_epochs":
      problems += _boundary_problems(value, values.get("num_epochs"))
  problems += _device_problems(values, num_devices)
  problems += _grid_problems(values)
  problems += _statistics_problems(values)
  if values.get("model.dtype") == "float64" and not jax.config.jax_enable_x64:
    problems.append("config.model.dtype: 'float64' needs 64-bit JAX; set JAX_ENABLE_X64=1 (it "
                    "serves tests of exact maths; train with float32 or bfloat16)")
  if problems:
    raise ConfigError(sorted(problems))


def _check_fields(config, reference: ml_collections.ConfigDict, prefix: str, known: list[str],
                  problems: list[str], values: dict[str, Any]) -> None:
  """Checks names and types against `reference`; collects the well-typed leaves in `values`.

  `known`: every path of the whole reference, for suggestions.
  """
  fields = dict(config.items())
  for key in sorted(fields.keys() - reference.keys()):
    problems.append(f"config.{prefix}{key}: unknown field; "
                    + _suggestion(key, reference, prefix, known))
  for key in sorted(reference.keys() - fields.keys()):
    expected = reference[key]
    default_value = "fields" if isinstance(expected, ml_collections.ConfigDict) else repr(expected)
    problems.append(f"config.{prefix}{key}: missing field (default_config.py sets {default_value})")
  for key in sorted(reference.keys() & fields.keys()):
    path, value, expected = prefix + key, fields[key], reference[key]
    if isinstance(expected, ml_collections.ConfigDict):
      if isinstance(value, (ml_collections.ConfigDict, Mapping)):
        _check_fields(value, expected, path + ".", known, problems, values)
      else:
        problems.append(f"config.{path}: expected a ConfigDict of {path} fields, got "
                        f"{type(value).__name__} {value!r}")
      continue
    wanted = _expected_type(expected, reference.get_type(key))
    if wanted is None or _matches(value, *wanted):
      values[path] = value
    else:
      problems.append(f"config.{path}: expected {_describe(*wanted)}, got "
                      f"{type(value).__name__} {value!r}")


def _expected_type(expected, field_type: type) -> tuple[type, type | None, bool] | None:
  """(type, element type of a sequence, None allowed) of a reference field; None: anything."""
  if expected is None:  # a placeholder: None or its declared type.
    return None if field_type is type(None) else (field_type, None, True)
  if isinstance(expected, (tuple, list)):
    element_types = {type(e) for e in expected}
    return (tuple, element_types.pop() if len(element_types) == 1 else None, False)
  return (type(expected), None, False)


def _matches(value, kind: type, element: type | None, nullable: bool) -> bool:
  if value is None:
    return nullable
  if kind is tuple:
    return isinstance(value, (tuple, list)) and (
        element is None or all(_matches(e, element, None, False) for e in value))
  if kind is bool or isinstance(value, bool):  # bool is an int to Python, not to a config.
    return kind is bool and isinstance(value, bool)
  if kind is int:
    return isinstance(value, numbers.Integral)
  if kind is float:
    return isinstance(value, numbers.Real)
  return isinstance(value, kind)


def _describe(kind: type, element: type | None, nullable: bool) -> str:
  name = {float: "float (or int)", tuple: "tuple (or list)"}.get(kind, kind.__name__)
  if element is not None:
    name += f" of {_describe(element, None, False)}"
  return f"{name} or None" if nullable else name


def _suggestion(key: str, reference: ml_collections.ConfigDict, prefix: str,
                known: list[str]) -> str:
  """'did you mean ...' from the same level, else the same name at another level."""
  close = difflib.get_close_matches(key, list(reference.keys()), n=1)
  if close:
    return f"did you mean config.{prefix}{close[0]}?"
  elsewhere = [p for p in known if p.rsplit(".", 1)[-1] == key]
  if elsewhere:
    return f"did you mean config.{elsewhere[0]}?"
  return f"known fields of config{'.' + prefix[:-1] if prefix else ''}: " + ", ".join(
      sorted(reference.keys()))


def _paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  paths = []
  for key, value in config.items():
    paths.append(prefix + key)
    if isinstance(value, ml_collections.ConfigDict):
      paths += _paths(value, prefix + key + ".")
  return paths


def _choice_problems(path: str, value, allowed: tuple) -> list[str]:
  listed = ", ".join(repr(a) for a in allowed)
  if isinstance(value, (tuple, list)):
    if not value or len(set(value)) < len(value) or not set(value) <= set(allowed):
      return [f"config.{path}: got {value!r}; must be a non-empty subset of {listed} without "
              "duplicates"]
  elif value not in allowed:
    return [f"config.{path}: got {value!r}; allowed: {listed}"]
  return []


def _boundary_problems(boundaries, num_epochs) -> list[str]:
  """lr_boundaries_epochs must increase, each inside the run (skipped if num_epochs is bad)."""
  if num_epochs is None or num_epochs not in RANGES["num_epochs"]:
    return []
  reasons = []
  outside = [b for b in boundaries if not 0 < b < num_epochs]
  if outside:
    reasons.append(f"{', '.join(map(str, outside))} outside the run")
  if any(a >= b for a, b in zip(boundaries, boundaries[1:])):
    reasons.append("not increasing")
  if not reasons:
    return []
  inside = tuple(sorted({b for b in boundaries if 0 < b < num_epochs}))
  return [f"config.lr_boundaries_epochs: got {tuple(boundaries)!r} ({'; '.join(reasons)}); with "
          f"lr_schedule='piecewise' they must increase, each in (0, num_epochs={num_epochs}), "
          f"e.g. {shlex.quote(f'--config.lr_boundaries_epochs={inside!r}')}"]


def _grid_problems(values: dict[str, Any]) -> list[str]:
  """Grid gates are per layer and compute their own scores: no shared u, no dp compatibility."""
  if not values.get("model.attention") or values.get("model.attention_type") != "grid":
    return []
  problems = []
  if values.get("model.shared_u"):
    problems.append("config.model.shared_u: got True with model.attention_type='grid'; grid "
                    "gates are per layer: set model.shared_u=False")
  if values.get("model.compatibility") == "dp":
    problems.append("config.model.compatibility: got 'dp' with model.attention_type='grid'; "
                    "grid gates compute their own additive scores: set model.compatibility='pc' "
                    "(the default, which grid ignores)")
  return problems


def _statistics_problems(values: dict[str, Any]) -> list[str]:
  """data_mean and data_std, where given: one number per image channel; std positive."""
  if values.get("dataset") not in datasets.DATASETS:
    return []
  info = datasets.DATASETS[values["dataset"]]
  channels, problems = info.image_shape[-1], []
  for path, own in (("data_mean", info.mean), ("data_std", info.std)):
    value = values.get(path)
    if value is None:
      continue
    numbers_ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
    if len(value) != channels or not numbers_ok or (
        path == "data_std" and not all(v > 0 for v in value)):
      problems.append(
          f"config.{path}: got {tuple(value)!r}; {values['dataset']} images have {channels} "
          f"channel{'s' * (channels > 1)}: give {channels} "
          f"{'positive ' if path == 'data_std' else ''}number{'s' * (channels > 1)}, e.g. "
          f"{shlex.quote(f'--config.{path}={own!r}')} (the dataset's own), or None")
  return problems


def _device_problems(values: dict[str, Any], num_devices: int) -> list[str]:
  """Batch sizes must split evenly over the devices (data parallel)."""
  problems = []
  for path in ("batch_size", "eval_batch_size"):
    size = values.get(path)
    if size is None or size not in RANGES[path] or size % num_devices == 0:
      continue
    lower = size // num_devices * num_devices
    nearest = " or ".join(str(s) for s in (lower, lower + num_devices) if s > 0)
    problems.append(f"config.{path}: {size} does not split over {num_devices} devices (data "
                    f"parallel); use a multiple of {num_devices}, e.g. {nearest}")
  return problems
