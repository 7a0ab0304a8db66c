"""Config files: a Python file's get_config(), and what goes wrong in one as one line naming the
file and its line."""

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
