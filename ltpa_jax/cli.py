"""What the commands share: the --config flag, quiet logs, one line per user mistake, --help
(and -h) exiting 0, and the persistent compilation cache (`--compilation_cache`, see
`compilation_cache`).

A mistake (an `errors.UserError`, a flag absl rejects, an unknown config field, a missing or
existing file) or a full disk ends a command with `error: <message>` on stderr and exit status 2,
no traceback; `--debug` or `-v 1` shows the traceback instead, and what libraries report after it
(`errors.verbose`). Library logs (INFO, and TFDS's notice that it decodes images with PIL, not
OpenCV) show only with `-v`.
"""

import contextlib
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from ltpa_jax.base import compilation_cache
from ltpa_jax.config import defaults as default_config
from ltpa_jax.base import errors
from ltpa_jax.rundir import workdir

flags.disclaim_key_flags()  # the flags defined here belong to the command, in its --help

MISTAKES = (errors.UserError, flags.Error, app.UsageError, FileNotFoundError, FileExistsError)
EXIT_STATUS = 2
_OPENCV_NOTICE = "OpenCV is not installed"


class _ConfigFileParser(flags.ArgumentParser):
  """A config by path or name: a Python file with get_config() (configs/*.py, or a config of
  configs/ by name, see `default_config.find`), parsed by ml_collections' `python_parser`, or a
  run's config.json."""

  def __init__(self, python_parser: flags.ArgumentParser):
    self._python_parser = python_parser

  def parse(self, path):
    # ml_collections passes what follows a colon to get_config
    file, colon, argument = path.partition(":")
    try:
      file = default_config.find(file)
    except FileNotFoundError as e:
      raise ValueError(f"{str(e).rstrip('.')}, or a run's config.json.") from None
    if not file.endswith(".json"):
      return self._python_parser.parse(file + colon + argument)
    config = workdir.read_config(file)
    config.lock()
    return config

  def flag_type(self):
    return self._python_parser.flag_type()


def define_config_flag():
  """Defines --config (and its --config.<field> overrides); returns its holder."""
  holder = config_flags.DEFINE_config_file(
      "config", None, "A config: a name (vgg19_att, tiny, ...: the files of configs/), a "
      "config file (yours), or a run's config.json; then --config.<field>=value overrides.")
  flag = flags.FLAGS["config"]
  flag.parser = _ConfigFileParser(flag.parser)
  return holder


def int_list(flag) -> list[int]:
  """The values of a list flag (`flags.DEFINE_list`, e.g. --seeds 0,1,2) as ints."""
  try:
    return [int(value) for value in flag.value]
  except ValueError:
    raise app.UsageError(f"--{flag.name} must be comma-separated ints, got "
                         f"{','.join(flag.value)}") from None


def run(main):
  """`app.run(main)`, with quiet library logs and a user's mistake as one line (see above)."""
  flags.DEFINE_bool("debug", False, "On an error, show its traceback (as -v 1 does).")
  flags.DEFINE_string("compilation_cache", compilation_cache.DEFAULT_DIR,
                      "Folder of the persistent XLA compilation cache, where a restarted or "
                      "resumed run finds its compiled programs; empty: off.")

  def parse(argv):
    with _mistakes_exit():
      try:
        return flags.FLAGS(["--help" if arg == "-h" else arg for arg in argv])
      except SystemExit as e:  # absl's --help (--helpfull, ...): printed, then exit status 1
        raise SystemExit(0) from e
      except (AttributeError, KeyError) as e:  # ml_collections: an override of a missing field
        while e.args and isinstance(e.args[0], Exception):  # AttributeError(KeyError(message))
          e = e.args[0]
        raise app.UsageError("unknown config field " + ". ".join(str(e.args[0]).splitlines())
                             + " (configs/default.py lists every field)")

  def quiet_main(argv):
    errors.verbose = _wants_traceback(sys.argv)
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
      logging.get_absl_logger().addFilter(lambda record: _OPENCV_NOTICE not in record.getMessage())
    compilation_cache.use(flags.FLAGS.compilation_cache)
    with _mistakes_exit():
      return main(argv)

  app.run(quiet_main, flags_parser=parse)


@contextlib.contextmanager
def _mistakes_exit():
  """Ends the process on a mistake: one line, exit status 2 (the traceback if asked for)."""
  try:
    yield
  except MISTAKES as error:
    if _wants_traceback(sys.argv):
      raise
    print(f"error: {error}", file=sys.stderr)
    sys.exit(EXIT_STATUS)
  except OSError as error:
    if error.errno not in errors.DISK_FULL or _wants_traceback(sys.argv):
      raise
    print(f"error: {error}. Free some space, then run the same command: a run resumes from its "
          "last complete checkpoint.", file=sys.stderr)
    sys.exit(EXIT_STATUS)


def _wants_traceback(argv) -> bool:
  """Whether `argv` holds --debug or -v N with N >= 1, read alone: parsing every flag may be what
  failed."""
  own = flags.FlagValues()
  flags.DEFINE_bool("debug", False, "", flag_values=own)
  flags.DEFINE_integer("verbosity", -1, "", short_name="v", flag_values=own)
  own.set_gnu_getopt(True)
  try:
    own(argv, known_only=True)
  except flags.Error:
    return False
  return own.debug or own.verbosity >= 1
