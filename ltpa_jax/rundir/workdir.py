"""A run's workdir: the config it was made with, and JSON files written atomically."""

from __future__ import annotations

import copy
import json
import os
import shlex
import tempfile
from typing import Any, Mapping

import ml_collections

from ltpa_jax.config import defaults as default_config
from ltpa_jax.config import fields
from ltpa_jax.base import errors
from ltpa_jax.rundir import workdir_lock

CONFIG_FILE = "config.json"


class ConfigMismatchError(errors.UserError, ValueError):
  """The workdir belongs to a run of another config (or to something else)."""


def config_dict(config) -> dict[str, Any]:
  """A config (ConfigDict or mapping) as plain JSON data: tuples become lists."""
  if hasattr(config, "to_json"):
    return json.loads(config.to_json())
  return json.loads(json.dumps(config))


def upgraded(recorded: dict[str, Any]) -> dict[str, Any]:
  """A recorded config (JSON data) in current terms (`fields.FIELDS`): fields under a former name
  renamed, and fields added since the run was recorded at the value it had (`Field.before`)."""
  recorded = copy.deepcopy(recorded)
  for field in fields.FIELDS:
    *sections, name = field.path.split(".")
    node = recorded
    for section in sections:
      node = node.get(section) if isinstance(node, dict) else None
    if not isinstance(node, dict):
      continue
    for old_name in field.old_names:
      if old_name in node:
        node[name] = node.pop(old_name)
    if field.before is not fields.ALWAYS:
      node.setdefault(name, field.before)
  return recorded


def read_recorded(path: str) -> dict[str, Any]:
  """The config recorded in a run's config.json, as JSON data in current terms (`upgraded`);
  UserError naming the file if it is not a JSON object."""
  try:
    with open(path) as f:
      recorded = json.load(f)
  except ValueError as e:  # truncated, not JSON
    raise errors.UserError(f"{path} cannot be read ({e}): it is not a run's config.") from e
  if not isinstance(recorded, dict):
    raise errors.UserError(f"{path} holds a {type(recorded).__name__}, not a run's config.")
  return upgraded(recorded)


def read_config(path: str) -> ml_collections.ConfigDict:
  """The config recorded in a run's config.json, typed as the defaults type its fields
  (JSON lists become tuples, a null a typed placeholder), so that --config.* overrides parse."""
  config = default_config.get_config()
  config.update(read_recorded(path))  # fields the defaults lack are kept, for validation to report
  return config


def read_run_config(workdir: str, data_dir: str | None = None) -> ml_collections.ConfigDict:
  """The config of the run in `workdir` (reading data from `data_dir` if given); UserError if
  there is none."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise errors.UserError(f"No {CONFIG_FILE} in {workdir}: give the workdir of a training run "
                           "(python -m ltpa_jax --workdir ...).")
  config = read_config(path)
  if data_dir:
    config.data_dir = data_dir
  return config


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"model.attention": ...} from {"model": {"attention": ...}}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def write_json(path: str, data, overwrite: bool = False):
  """Writes `data` to `path` atomically: readers see no file (or the old one) or the whole new one.

  Raises FileExistsError when `path` exists, unless `overwrite`.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(data, f, indent=2, sort_keys=True)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    if overwrite:
      os.replace(tmp, path)
    else:
      try:
        os.link(tmp, path)  # fails if `path` exists, even if another process just made it
      except FileExistsError:
        raise FileExistsError(f"{path} exists; not overwriting it.") from None
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


# Fields a resumed run may change: where the data lives and how the work is split into calls.
RESUMABLE_CHANGES = ("data_dir", "manual_dir", "steps_per_call", "eval_batch_size",
                     "keep_checkpoints")


def train_command(workdir: str) -> str:
  """The command that trains (or resumes) the run in `workdir` with its own config.json."""
  return (f"python -m ltpa_jax --config {shlex.quote(os.path.join(workdir, CONFIG_FILE))} "
          f"--workdir {shlex.quote(workdir)}")


def check_same_config(workdir: str, config):
  """Records `config` in a new workdir; in an existing one, checks it is the recorded config
  (`check_config`)."""
  if not check_config(workdir, config):
    record_config(workdir, config)


def record_config(workdir: str, config):
  """Writes `config` to the workdir's config.json; FileExistsError if there is one."""
  write_json(os.path.join(workdir, CONFIG_FILE), config_dict(config))


def check_config(workdir: str, config) -> bool:
  """Whether `workdir` records `config` (False: it records none and holds nothing else).

  Raises ConfigMismatchError, listing the differences, when the workdir was made with another
  config, or holds files but no recorded config: a run never mixes two configs or overwrites
  another run.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    if os.path.isdir(workdir) and set(os.listdir(workdir)) - {workdir_lock.LOCK_FILE}:
      raise ConfigMismatchError(
          f"Workdir {workdir} holds files but no {CONFIG_FILE}: it is not a run of ltpa_jax (or "
          "its config file was deleted). Use a new or empty workdir.")
    return False
  old, new = flatten(read_recorded(path)), flatten(config_dict(config))
  for key in RESUMABLE_CHANGES:
    old.pop(key, None)
    new.pop(key, None)
  if old != new:
    value = lambda flat, key: repr(flat[key]) if key in flat else "<absent>"
    changes = "; ".join(f"{key}: {value(old, key)} -> {value(new, key)}"
                        for key in sorted(old.keys() | new.keys())
                        if value(old, key) != value(new, key))
    raise ConfigMismatchError(
        f"Workdir {workdir} holds a run of another config ({changes}). Use a new workdir for "
        f"this config, or resume that run with its own config: {train_command(workdir)}")
  return True
