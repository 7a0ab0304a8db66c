"""The package stands alone: installed with `pip install .` into a fresh venv, every command runs
from an empty folder outside the repository, its --help exits 0 (and an installed script's), configs load by name from the
configs/ the wheel carries (the table's defaults too), and pyproject.toml declares every
distribution the package imports and every extra the README installs."""

import ast
import importlib
from importlib import metadata
import importlib.util
import json
import os
import pathlib
import re
import shlex
import shutil
import site
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from ltpa_jax.config import validation as config_validation

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem != "__init__")
# Each command and a text its --help prints.
HELP = {
    "ltpa_jax": "--distributed",
    "ltpa_jax.benchmark": "--seed_layout",
    "ltpa_jax.evaluate_torch": "--checkpoint",
    "ltpa_jax.replicas": "--seeds",
    "ltpa_jax.report": "run_dirs",
    "ltpa_jax.robustness": "--test_images",
    "ltpa_jax.sweep": "--sweep",
    "ltpa_jax.table": "--seed_layout",
    "ltpa_jax.visualize": "--indices",
}
SCREEN = 50  # lines: a --help shows the command's flags, not the whole config
# Prints where ltpa_jax.training.loop and the configs come from, the configs given by name, and the
# table's default configs.
IMPORT_AND_LOAD_CONFIGS = """import json, sys
import ltpa_jax.training.loop
from ltpa_jax import default_config
from ltpa_jax.analysis import studies
print(ltpa_jax.training.loop.__file__)
print(default_config.configs_dir())
print(json.dumps([json.loads(default_config.from_file(n).to_json()) for n in sys.argv[1:]]))
print(json.dumps({n: json.loads(c.to_json())
                  for n, c in studies.named_configs(studies.CONFIGS, {}).items()}))
"""


def _fresh_venv(root: pathlib.Path) -> pathlib.Path:
  """A venv with ltpa_jax installed (not editable) from a copy of the sources; the dependencies
  are this interpreter's site-packages, put on its path by a .pth file. Returns its python."""
  for module in ("pip", "setuptools"):
    if importlib.util.find_spec(module) is None:
      pytest.skip(f"{module} is not importable here: cannot install ltpa_jax offline")
  source = root / "src"
  for folder in ("ltpa_jax", "configs"):
    shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(REPO / name, source)
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], check=True)
  python = root / "venv" / "bin" / "python"
  purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                           check=True, capture_output=True, text=True).stdout.strip()
  (pathlib.Path(purelib) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
  install = subprocess.run(
      [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
       "--no-cache-dir", "--ignore-installed", "--disable-pip-version-check", "."],
      cwd=source, env=_env(), capture_output=True, text=True, timeout=300)
  assert install.returncode == 0, install.stdout + install.stderr
  return python


def _env() -> dict:
  """This environment without PYTHONPATH, writing no bytecode (never into the repository)."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  # Non-partitionable threefry compiles the random init faster on XLA:CPU (numbers untested here).
  return {**env, "PYTHONDONTWRITEBYTECODE": "1", "JAX_PLATFORMS": "cpu",
          "JAX_THREEFRY_PARTITIONABLE": "0"}


@pytest.mark.slow
def test_installed_package_runs_every_command_from_an_empty_folder(prepared_fake_data, tmp_path):
  python = _fresh_venv(tmp_path)
  cwd = tmp_path / "empty"
  cwd.mkdir()

  def start(*args):
    return subprocess.Popen([python, *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

  loads = start("-c", IMPORT_AND_LOAD_CONFIGS, *CONFIGS)
  helps = {command: start("-m", command, "--help") for command in HELP}
  workdir = tmp_path / "run"
  train = start("-m", "ltpa_jax", "--config", "tiny", "--workdir", str(workdir),
                "--config.dataset=fashion_mnist", f"--config.data_dir={prepared_fake_data}",
                "--config.batch_size=10", "--config.eval_batch_size=10", "--config.num_epochs=1",
                "--config.lr_boundaries_epochs=()", "--config.attention_images=2")

  out, err = loads.communicate(timeout=300)
  assert loads.returncode == 0, err
  module, configs_dir, configs, table_configs = out.splitlines()
  for path in (module, configs_dir):  # the wheel's, not the checkout's
    assert pathlib.Path(path).is_relative_to(tmp_path / "venv"), path
  for name, loaded in zip(CONFIGS, json.loads(configs), strict=True):  # the same as by import
    assert loaded == json.loads(importlib.import_module(f"configs.{name}").get_config().to_json())
  assert json.loads(table_configs) == {
      name: json.loads(importlib.import_module(f"configs.{name}").get_config().to_json())
      for name in ("vgg19", "vgg19_att")}
  for command, text in HELP.items():
    out, err = helps[command].communicate(timeout=300)
    assert (helps[command].returncode, "Traceback" in err) == (0, False), err
    assert text in out and len(out.splitlines()) <= SCREEN, out
  script = subprocess.run([python.parent / "ltpa-table", "--help"], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)  # an installed script
  assert (script.returncode, script.stderr) == (0, ""), script.stderr
  assert script.stdout.startswith("The reference's table in one command") and (
      HELP["ltpa_jax.table"] in script.stdout), script.stdout
  out, err = train.communicate(timeout=300)
  assert train.returncode == 0, out + err
  assert out.startswith("Training on 1 x cpu (cpu), 1 process, float32: "), out
  assert "final" in json.loads((workdir / "results.json").read_text())


def _canonical(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> list[str]:
  """pyproject.toml's requirements: the dependencies and every extra's."""
  tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
  project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
  return project["dependencies"] + sum(project["optional-dependencies"].values(), [])


def _third_party_imports() -> dict[str, set[str]]:
  """{top-level module: the files importing it} of ltpa_jax's imports outside the standard
  library, lazy ones included."""
  imports = {}
  for path in (REPO / "ltpa_jax").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0:
        modules = [node.module]
      else:
        continue
      for top in {m.split(".")[0] for m in modules} - {"ltpa_jax", *sys.stdlib_module_names}:
        imports.setdefault(top, set()).add(path.name)
  return imports


def test_every_third_party_import_is_declared():
  declared = {_canonical(re.match(r"[\w.-]+", r).group()) for r in _requirements()}
  # A module not installed here is taken to be named like its distribution (torch, scipy).
  distributions = metadata.packages_distributions()
  undeclared = {module: sorted(files) for module, files in _third_party_imports().items()
                if not {_canonical(d) for d in distributions.get(module, [module])} & declared}
  assert not undeclared, f"Declare their distributions in pyproject.toml: {undeclared}"


def test_the_torch_extra_is_the_version_ci_and_the_readme_install():
  (extra,) = [r for r in _requirements() if _canonical(r).startswith("torch>=")]
  for name in (".ci/run", "README.md"):
    pins = set(re.findall(r"torch==([\d.]+)", (REPO / name).read_text()))
    assert pins == {extra.split(">=")[1]}, (name, pins, extra)


def test_every_extra_the_readme_installs_is_declared():
  tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
  declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
      "optional-dependencies"])
  named = {extra for extras in re.findall(r"\.\[([\w,-]+)\]", (REPO / "README.md").read_text())
           for extra in extras.split(",")}
  assert {"cuda", "tpu"} <= named <= declared, (named, declared)


def test_the_readme_smoke_command_is_a_valid_tiny_run_of_one_short_epoch():
  """The README's smoke command, as the shell splits it, parsed by the training command's flags."""
  readme = (REPO / "README.md").read_text()
  (command,) = re.findall(r"^python train\.py --config configs/tiny\.py .*\\\n.*$", readme,
                          re.MULTILINE)
  argv = shlex.split(command.replace("\\\n", " "))
  own = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=own, sys_argv=argv[1:])
  flags.DEFINE_string("workdir", None, "", flag_values=own)
  own(argv[1:])  # train.py, then its flags
  config = own.config
  config_validation.validate(config, 1)
  assert (config.model.width_multiplier, config.num_epochs) == (1 / 16, 1)
  assert 0 < config.train_examples // config.batch_size <= 200  # steps: about a minute on 2 cores
