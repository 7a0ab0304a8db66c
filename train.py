"""Trains and evaluates a config: python train.py --config configs/vgg19_att.py --workdir DIR.

The same as `python -m ltpa_jax` (ltpa_jax/__main__.py), which runs from any folder.
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("ltpa_jax", run_name="__main__", alter_sys=True)
