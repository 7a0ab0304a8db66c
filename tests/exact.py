"""Float64 checks that two computations are the same maths: equal up to float64 rounding."""

import jax
import numpy as np

RTOL = 1e-10  # float64 eps is 2.2e-16; these tests measured at most 5e-13 after 16 steps


def noise_floor(tree, rtol: float = RTOL) -> float:
  """`rtol` times the largest magnitude in `tree`: the absolute tolerance of leaves whose exact
  value is 0 and that hold rounding noise instead, such as conv biases before BatchNorm (their
  gradient cancels) and, with softmax attention, g's weights (softmax ignores the shift <u, g>)."""
  return rtol * max(float(np.abs(x).max(initial=0)) for x in map(np.asarray, jax.tree.leaves(tree))
                    if x.dtype.kind == "f")


def assert_trees_close(actual, desired, rtol: float = RTOL, atol: float = 0.0):
  """Every leaf of two pytrees of the same structure within `rtol` (and `atol`) of the desired
  one; floating leaves must be float64."""
  leaves = jax.tree_util.tree_leaves_with_path(desired)
  for (path, b), a in zip(leaves, jax.tree.leaves(actual), strict=True):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and (a.dtype.kind != "f" or a.dtype == np.float64), (a.dtype, path)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))
