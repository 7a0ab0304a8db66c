"""The runner every command shares: its flags on a FlagValues of its own (importing a command
defines none on absl's FLAGS), --help (and -h) exiting 0, "Unexpected arguments", quiet library
logs, one line per user mistake, the command that runs it again (`Call.resume_command`), and the
persistent compilation cache (`--compilation_cache`, see `compilation_cache`).

A command module holds `define_flags(flag_values)` and its `main = command(define_flags)(work)`:
`main(argv)` runs it in this process (tests), `main.run()` is the process's entry (`python -m`,
the console scripts of pyproject.toml).

A mistake (an `errors.UserError`, a flag absl rejects, an unknown config field, a missing or
existing file) or a full disk ends a command with `error: <message>` on stderr and exit status 2,
no traceback, and nothing after it: the process ends there (`os._exit`), so no thread, future or
coroutine a library left behind reports anything at shutdown. `--debug` or `-v 1` shows the
traceback instead, and what libraries report after it (`errors.verbose`). Library logs (INFO,
and TFDS's notice that it decodes images with PIL, not OpenCV) show only with `-v`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shlex
import sys
from typing import Callable, Sequence

from absl import flags
from absl import logging
from ml_collections import config_flags

from ltpa_jax.base import compilation_cache
from ltpa_jax.base import errors
from ltpa_jax.config import files as config_files
from ltpa_jax.core import parallel
from ltpa_jax.rundir import workdir

flags.disclaim_key_flags()  # the flags defined here belong to the command, in its --help

MISTAKES = (errors.UserError, flags.Error, FileNotFoundError, FileExistsError)
EXIT_STATUS = 2
HELP = ("-h", "-help", "--help", "--helpshort", "--helpfull")
_OPENCV_NOTICE = "OpenCV is not installed"


@dataclasses.dataclass(frozen=True)
class Call:
  """A command's call: its parsed flags, its positional arguments, and the command line that
  runs it again (`resume_command`)."""
  flags: flags.FlagValues
  args: list[str]
  resume_command: str


class _ConfigFileParser(flags.ArgumentParser):
  """A config by path or name: a Python file with get_config() (configs/*.py, or a config of
  configs/ by name, see `config_files.find`; what follows a colon is get_config's argument),
  or a run's config.json."""

  def parse(self, path):
    file, colon, argument = path.partition(":")
    try:
      file = config_files.find(file)
    except FileNotFoundError as e:
      raise ValueError(f"{str(e).rstrip('.')}, or a run's config.json.") from None
    if file.endswith(".json"):
      config = workdir.read_config(file)
    else:
      config = config_files.load(file, *([argument] if colon else []))
    if callable(getattr(config, "lock", None)):
      config.lock()
    return config

  def flag_type(self):
    return "config object"


def define_config_flag(flag_values: flags.FlagValues):
  """Defines --config (and its --config.<field> overrides)."""
  config_flags.DEFINE_config_file(
      "config", None, "A config: a name (vgg19_att, tiny, ...: the files of configs/), a "
      "config file (yours), or a run's config.json; then --config.<field>=value overrides.",
      flag_values=flag_values)
  flag_values["config"].parser = _ConfigFileParser()


def define_seed_layout_flag(flag_values: flags.FlagValues, runs: str):
  """Defines --seed_layout: how `runs` (e.g. "a config's seeds") share one program."""
  flags.DEFINE_enum(
      "seed_layout", parallel.AUTO, (parallel.AUTO, *parallel.SEED_LAYOUTS),
      f"How {runs} run together in one program: vmap (batched convolutions) or loop (one "
      "after another); the same maths, and a run may resume in the other layout. auto: loop "
      "on CPU, vmap elsewhere.", flag_values=flag_values)


def int_list(flag) -> list[int]:
  """The values of a list flag (`flags.DEFINE_list`, e.g. --seeds 0,1,2) as ints."""
  try:
    return [int(value) for value in flag.value]
  except ValueError:
    raise errors.UserError(f"--{flag.name} must be comma-separated ints, got "
                           f"{','.join(flag.value)}") from None


def command(define_flags: Callable[[flags.FlagValues], None], args: str | None = None):
  """Makes `work(call: Call)` a command (`Command`) with the flags `define_flags` defines; `args`
  says what its positional arguments are (None: it takes none)."""
  return lambda work: Command(work, define_flags, args)


class Command:
  """A command: `command(argv)` runs it in this process, `command.run()` as the process."""

  def __init__(self, work: Callable[[Call], None], define_flags, args: str | None):
    self._work, self._define_flags, self._args = work, define_flags, args
    functools.update_wrapper(self, work)

  def __call__(self, argv: Sequence[str] | None = None) -> None:
    """Runs the command on `argv` (what follows the program; default: sys.argv[1:]); returns
    when it ends well, raises SystemExit(0) after --help, SystemExit(2) after a mistake's line.
    The caller's compilation cache settings are kept."""
    with compilation_cache.kept():
      self._run(sys.argv[1:] if argv is None else list(argv), hard_exit=False)

  def run(self) -> None:
    """The process's entry: as a call on sys.argv[1:], but after a mistake's line the process
    ends at once, exit status 2: nothing a library left behind (orbax's and TensorStore's
    threads, futures, coroutines) runs or prints at interpreter shutdown."""
    self._run(sys.argv[1:], hard_exit=True)

  @property
  def module(self) -> str:
    """What `python -m` runs: e.g. ltpa_jax.table, ltpa_jax (train)."""
    module = sys.modules[self._work.__module__]
    name = module.__spec__.name if module.__spec__ else module.__name__
    return name.removesuffix(".__main__")

  def _run(self, argv: list[str], hard_exit: bool):
    debug = _wants_traceback(argv)
    errors.verbose = debug
    try:
      self._parse_and_work(argv)
    except Exception as error:  # pylint: disable=broad-except
      line = None if debug else _one_line(error)
      if line is None:
        raise
      print(f"error: {line}", file=sys.stderr)
      if hard_exit:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_STATUS)  # the workdir locks were released as the error left their blocks
      raise SystemExit(EXIT_STATUS) from None

  def _parse_and_work(self, argv: list[str]):
    flag_values = flag_values_of(self._define_flags)
    if any(arg in HELP for arg in argv[:argv.index("--") if "--" in argv else None]):
      print(self._help(flag_values))
      raise SystemExit(0)
    args = _parse(flag_values, [self.module, *argv])
    if args and self._args is None:
      raise errors.UserError(f"Unexpected arguments: {args}")
    _quiet_logs(flag_values)
    compilation_cache.use(flag_values.compilation_cache)
    self._work(Call(flag_values, args, resume_command(self.module, flag_values, argv)))

  def _help(self, flag_values: flags.FlagValues) -> str:
    doc = sys.modules[self._work.__module__].__doc__.rstrip()
    args = f"\n\narguments: {self._args}" if self._args else ""
    return f"{doc}{args}\n\nflags:\n\n{flag_values.get_help(include_special_flags=False).strip()}"


def flag_values_of(define_flags: Callable[[flags.FlagValues], None]) -> flags.FlagValues:
  """A new FlagValues holding the flags `define_flags` defines and the runner's own."""
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  flags.DEFINE_bool("debug", False, "On an error, show its traceback (as -v 1 does).",
                    flag_values=flag_values)
  flags.DEFINE_integer("verbosity", -1, "0: the libraries' logs too; 1: also an error's "
                       "traceback.", short_name="v", flag_values=flag_values)
  flags.DEFINE_string("compilation_cache", compilation_cache.DEFAULT_DIR,
                      "Folder of the persistent XLA compilation cache, where a restarted or "
                      "resumed run finds its compiled programs; empty: off.",
                      flag_values=flag_values)
  return flag_values


def resume_command(module: str, flag_values: flags.FlagValues, argv: Sequence[str]) -> str:
  """`python -m <module>` with the flags of `argv`, each once, with its last value (a repeatable
  flag, e.g. --sweep, with each of its values), then the positional arguments."""
  given: dict[str, list[list[str]]] = {}
  positional, i = [], 0
  while i < len(argv):
    token, i = argv[i], i + 1
    if token == "--":
      positional += argv[i - 1:]
      break
    if not token.startswith("-") or token == "-":
      positional.append(token)
      continue
    name, equals, _ = token.lstrip("-").partition("=")
    flag = _flag(flag_values, name)
    group = [token]
    if flag is not None and not equals and not flag.boolean and i < len(argv):
      group.append(argv[i])
      i += 1
    key = flag.name if flag is not None else name
    if isinstance(flag, flags.MultiFlag):
      given.setdefault(key, []).append(group)
    else:
      given[key] = [group]  # at the place the flag was first given
  tokens = [token for groups in given.values() for group in groups for token in group]
  return shlex.join([sys.executable, "-m", module, *tokens, *positional])


def _flag(flag_values: flags.FlagValues, name: str):
  """The flag `name` stands for (--name, -short, --noname), or None."""
  known = flag_values._flags()  # pylint: disable=protected-access
  if name in known:
    return known[name]
  if name.startswith("no") and name[2:] in known and known[name[2:]].boolean:
    return known[name[2:]]
  return None


def _parse(flag_values: flags.FlagValues, argv: list[str]) -> list[str]:
  """Parses `argv` (the program, then its arguments) into `flag_values`; returns the positional
  arguments."""
  flag_values.set_gnu_getopt(True)
  try:
    with _as_sys_argv(argv):  # config_flags reads the --config.<field> overrides there
      return flag_values(argv)[1:]
  except (AttributeError, KeyError) as e:  # ml_collections: an override of a missing field
    while e.args and isinstance(e.args[0], Exception):  # AttributeError(KeyError(message))
      e = e.args[0]
    raise errors.UserError("unknown config field " + ". ".join(str(e.args[0]).splitlines())
                           + " (docs/config.md lists every field)") from None


def _quiet_logs(flag_values: flags.FlagValues):
  """Library logs at -v's level; without -v, warnings only, and not TFDS's OpenCV notice."""
  if not flags.FLAGS.is_parsed():  # absl logs "before flag parsing" otherwise
    flags.FLAGS.mark_as_parsed()
  logging.use_absl_handler()
  if flag_values["verbosity"].present:
    logging.set_verbosity(flag_values.verbosity)
    return
  logging.set_verbosity(logging.WARNING)
  logger = logging.get_absl_logger()
  if not any(f is _no_opencv_notice for f in logger.filters):
    logger.addFilter(_no_opencv_notice)


def _no_opencv_notice(record) -> bool:
  return _OPENCV_NOTICE not in record.getMessage()


def _one_line(error: Exception) -> str | None:
  """The line of a user's mistake or a full disk; None for any other error (a traceback)."""
  if isinstance(error, MISTAKES):
    return str(error)
  if isinstance(error, OSError) and error.errno in errors.DISK_FULL:
    return (f"{error}. Free some space, then run the same command: a run resumes from its last "
            "complete checkpoint.")
  return None


@contextlib.contextmanager
def _as_sys_argv(argv: list[str]):
  previous, sys.argv = sys.argv, argv
  try:
    yield
  finally:
    sys.argv = previous


def _wants_traceback(argv) -> bool:
  """Whether `argv` holds --debug or -v N with N >= 1, read alone: parsing every flag may be what
  failed."""
  own = flags.FlagValues()
  flags.DEFINE_bool("debug", False, "", flag_values=own)
  flags.DEFINE_integer("verbosity", -1, "", short_name="v", flag_values=own)
  own.set_gnu_getopt(True)
  try:
    own(["", *argv], known_only=True)
  except flags.Error:
    return False
  return own.debug or own.verbosity >= 1
