"""Config files: by path or by the name of a file of configs/ ("vgg19_att", which the installed
package carries as `ltpa_jax.configs`), a Python file's get_config(), and what goes wrong in one
as one line naming the file and its line. `sibling` lets a config file derive from another one
beside it, whatever the working directory."""

from __future__ import annotations

import importlib.util
import os
import traceback

import ml_collections

from ltpa_jax.base import errors


def load(path: str, *arguments: str) -> ml_collections.ConfigDict:
  """get_config(*arguments) of the Python file `path`; UserError for a syntax error or an
  exception while the file or its get_config() runs ("<file>, line <n>: <type>: <message>",
  raised from it), and for a file without get_config()."""
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as error:  # pylint: disable=broad-except
    raise _error(path, error) from error
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise errors.UserError(f"{path} defines no get_config(): a config file is a Python file whose "
                           "get_config() returns its config (see configs/tiny.py).")
  try:
    return get_config(*arguments)
  except Exception as error:  # pylint: disable=broad-except
    raise _error(path, error) from error


def _error(path: str, error: Exception) -> errors.UserError:
  """The line of `error`, raised by the config file `path` (or a file it runs)."""
  same = lambda file: os.path.abspath(file) == os.path.abspath(path)
  if isinstance(error, SyntaxError) and error.filename:
    file = path if same(error.filename) else error.filename  # as the user gave it
    where, message = f"{file}, line {error.lineno}", error.msg
  else:
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if same(frame.filename)]
    where, message = (f"{path}, line {lines[-1]}" if lines else path), str(error)
  return errors.UserError(f"{where}: {type(error).__name__}: {message}")


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
  return load(find(path))


def sibling(config_file: str, name: str) -> ml_collections.ConfigDict:
  """get_config() of the config file `name`.py in the folder of `config_file` (a `__file__`)."""
  return from_file(os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py"))
