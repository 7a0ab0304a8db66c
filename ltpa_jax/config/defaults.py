"""The config of every field's default (`fields.FIELDS`: the reference recipe, VGG19-att, softmax,
separate u), and config files by name.

    python train.py --config configs/default.py --workdir runs/default

The configs in configs/ start from this one and change a few fields (see configs/vgg19.py and
configs/vgg19_att.py); `validation` takes its fields and types from here. `sibling` lets a
config file derive from another one beside it, whatever the working directory. `find` takes a
config by path or by the name of a file of configs/ ("vgg19_att"), which the installed package
carries as `ltpa_jax.configs`.
"""

import importlib.util
import os

import ml_collections
from ml_collections.config_dict import placeholder

from ltpa_jax.config import fields


def get_config() -> ml_collections.ConfigDict:
  """A new config holding each field of `fields.FIELDS` at its default."""
  config = ml_collections.ConfigDict()
  for field in fields.FIELDS:
    *sections, name = field.path.split(".")
    node = config
    for section in sections:
      if section not in node:
        node[section] = ml_collections.ConfigDict()
      node = node[section]
    node[name] = placeholder(field.kind) if field.kind else field.default
  return config


def configs_dir() -> str:
  """The folder of the configs: the installed package's ltpa_jax/configs, else the checkout's
  configs/ (beside ltpa_jax/)."""
  spec = importlib.util.find_spec("ltpa_jax.configs")
  if spec is not None:
    return list(spec.submodule_search_locations)[0]
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(os.path.dirname(package), "configs")


def names() -> list[str]:
  """The names of the configs in `configs_dir()`."""
  return sorted(os.path.splitext(f)[0] for f in os.listdir(configs_dir())
                if f.endswith(".py") and f != "__init__.py")


def find(path_or_name: str) -> str:
  """The config file `path_or_name` stands for: a file, else the config of configs/ so named
  ("vgg19_att"); FileNotFoundError naming both if neither exists."""
  if os.path.isfile(path_or_name):
    return path_or_name
  shipped = os.path.join(configs_dir(), f"{path_or_name}.py")
  if os.sep not in path_or_name and os.path.isfile(shipped):
    return shipped
  raise FileNotFoundError(f"no config file {path_or_name} (in {os.getcwd()}), nor a config of "
                          f"that name. Give a path or one of: {', '.join(names())}.")


def from_file(path: str) -> ml_collections.ConfigDict:
  """get_config() of the config file at `path`, or of the config so named (see `find`)."""
  path = find(path)
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def sibling(config_file: str, name: str) -> ml_collections.ConfigDict:
  """get_config() of the config file `name`.py in the folder of `config_file` (a `__file__`)."""
  return from_file(os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py"))
