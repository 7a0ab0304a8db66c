"""The package's layers, checked by import-linter against pyproject.toml's contracts."""

import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _lint_imports(cwd: pathlib.Path) -> subprocess.CompletedProcess:
  lint = shutil.which("lint-imports", path=str(pathlib.Path(sys.executable).parent))
  if lint is None:
    pytest.skip("import-linter is not installed (pip install -e '.[test]')")
  return subprocess.run([lint, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}, check=False)


def test_every_import_points_down_and_no_library_module_uses_flags_or_private_jax():
  linted = _lint_imports(REPO)
  assert linted.returncode == 0, linted.stdout + linted.stderr


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
  """The contract is real: a core module that imports the training loop is reported."""
  copy = tmp_path / "repo"
  shutil.copytree(REPO / "ltpa_jax", copy / "ltpa_jax")
  shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
  plan = copy / "ltpa_jax" / "core" / "plan.py"
  plan.write_text(plan.read_text() + "\nfrom ltpa_jax.training import loop  # upward\n")
  linted = _lint_imports(copy)
  assert linted.returncode != 0
  assert "ltpa_jax.core.plan -> ltpa_jax.training.loop" in linted.stdout


def test_the_training_maths_imports_no_dataset_library():
  """core/ takes the data's types from data/types.py: TFDS loads only where data is read."""
  code = ("import sys; from ltpa_jax.core import memory, optim, parallel, plan, steps; "
          "print(sorted({'tensorflow_datasets', 'tensorflow'} & set(sys.modules)))")
  loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True)
  assert loaded.stdout.strip() == "[]"
