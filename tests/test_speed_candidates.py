"""Issue 29's speed candidates (model fields, default off): each the same maths as today's model
in float64; in bfloat16, the attention sums within a bound derived from bfloat16's rounding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltpa_jax.core import optim
from ltpa_jax.core import steps
from ltpa_jax.data import datasets
from ltpa_jax.model import models
from ltpa_jax.model import torch_interop
from tests import exact

TINY = 1 / 16
SEED_TABLE = dict(normalisation="sigmoid", shared_u=True, b2_convs=3)  # configs/vgg19_att.py


def images(seed=1, n=4, dtype=jnp.float64):
  return jax.random.normal(jax.random.key(seed), (n, 32, 32, 3), dtype)


def random_variables(model, seed=0):
  """Random values in the shapes and dtypes of `model`'s variables (no compile)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images(n=1, dtype=jnp.float32),
                                             train=False))
  return jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(x.dtype), shapes)


def outputs_and_grads(model, variables, x):
  """Train-mode logits, maps and new BatchNorm statistics, and the gradients of a loss of the
  logits and maps with respect to the params."""
  def loss(params):
    (logits, maps), updates = model.apply({**variables, "params": params}, x, train=True,
                                          mutable=["batch_stats"])
    scores = sum(jnp.sum(m["a"] ** 2) for m in maps.values())
    return jnp.sum(jnp.sin(logits)) + scores, (logits, maps, updates)
  (_, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
  return aux, grads


def relative_difference(got, want, floor):
  """The largest difference of two trees, relative to its leaf's largest magnitude (leaves at the
  noise floor left out), for the record."""
  return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
             for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want))
             if np.max(np.abs(b)) > floor)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [SEED_TABLE, {}], ids=["seed_table", "softmax_separate_u"])
def test_narrow_sums_and_max_pool_by_reshape_are_the_same_maths_in_float64(x64, variant):
  """Each candidate alone against today's model: train-mode outputs and gradients, float64. The
  model pools ReLU outputs: its ties are zeros, whose ReLU gradient is 0 either way."""
  model = models.VGGAttention(width_multiplier=TINY, dtype=jnp.float64, **variant)
  variables = jax.jit(lambda: model.init(jax.random.key(0), images(), train=False))()
  want = outputs_and_grads(model, variables, images())
  floor = exact.noise_floor(want[1])
  for candidate in ("attention_narrow_sums", "max_pool_by_reshape"):
    fast = model.clone(**{candidate: True})
    shapes = jax.eval_shape(lambda m=fast: m.init(jax.random.key(0), images(), train=False))
    assert jax.tree.structure(shapes) == jax.tree.structure(variables)  # the same checkpoints
    got = outputs_and_grads(fast, variables, images())
    # Conv biases before BatchNorm and (softmax) g's weights: exact gradient 0, rounding noise.
    exact.assert_trees_close(got, want, atol=floor)
    print(candidate, "largest relative difference", relative_difference(got, want, floor))


def test_narrow_sums_are_the_same_maths_in_float64_for_both_normalisations(x64):
  """normalise_and_pool, which grid gates share."""
  rng = np.random.default_rng(0)
  c, l = rng.standard_normal((2, 16, 16)), rng.standard_normal((2, 16, 16, 8))
  for normalisation in models.NORMALISATIONS:
    pool = functools.partial(models.normalise_and_pool, normalisation=normalisation)
    exact.assert_trees_close(pool(c, l, narrow_sums=True), pool(c, l))


def test_attention_narrow_sums_in_bfloat16_within_the_rounding_of_a(x64):
  """With bfloat16 l and float32 a, the narrow sum rounds each a to bfloat16 (relative error at
  most 2^-8, bfloat16's unit roundoff: 8 significant bits); the products of two bfloat16 are exact
  in float32 and the sum of n = H*W of them in float32 errs by at most n 2^-24 relative to
  sum |a*l| (a first-order bound). So |g_s - exact| <= (2^-8 + n 2^-24) * sum |a*l| per channel,
  exact being the float64 sum of the same bfloat16 l and float32 a."""
  rng = np.random.default_rng(0)
  ratios = []
  for normalisation in models.NORMALISATIONS:
    for seed, size in enumerate((32, 16, 8)):
      l = jnp.asarray(rng.standard_normal((8, size, size, 64)) * (seed + 1), jnp.bfloat16)
      c = jnp.asarray(rng.standard_normal((8, size, size)) * 3, jnp.float32)
      g_s, _, a = jax.jit(functools.partial(models.normalise_and_pool, normalisation=normalisation,
                                            narrow_sums=True))(c, l)
      assert g_s.dtype == a.dtype == jnp.float32
      terms = np.asarray(a, np.float64)[..., None] * np.asarray(l, np.float64)
      scale = 1 if normalisation == "softmax" else size * size
      want, bound = terms.sum((1, 2)) / scale, np.abs(terms).sum((1, 2)) / scale
      bound *= 2.0 ** -8 + size * size * 2.0 ** -24
      error = np.abs(np.asarray(g_s, np.float64) - want)
      assert (error <= bound).all(), (normalisation, size, (error / bound).max())
      ratios.append((error / bound).max())
  print("bfloat16 narrow sums: largest error / bound", max(ratios))
  assert max(ratios) >= 0.25, ratios  # the bound is not vacuous: measured 0.65


def test_u_as_a_contraction_keeps_the_convs_parameter():
  """`U` holds the 1x1 conv's kernel, named and initialised as nn.Conv's: the same values."""
  x = jnp.ones((1, 4, 4, 8))
  conv = models.u_module("kaiming", jnp.float32, narrow_sums=False)
  u = models.u_module("kaiming", jnp.float32, narrow_sums=True)
  params = conv.init(jax.random.key(3), x)
  np.testing.assert_array_equal(u.init(jax.random.key(3), x)["params"]["kernel"],
                                params["params"]["kernel"])
  assert u.apply(params, x).shape == conv.apply(params, x).shape == (1, 4, 4, 1)


def test_max_pool_by_reshape_is_the_same_maths_without_ties(x64):
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3), jnp.float64)  # no ties
  cotangent = jax.random.normal(jax.random.key(1), (2, 4, 4, 3), jnp.float64)
  want, want_vjp = jax.vjp(models.max_pool, x)
  got, got_vjp = jax.vjp(functools.partial(models.max_pool, by_reshape=True), x)
  exact.assert_trees_close((got, got_vjp(cotangent)), (want, want_vjp(cotangent)))


def test_max_pool_by_reshape_splits_a_tie_where_flax_picks_one():
  """The docstring's tie rule: a window of equal values gets 1/4 of the gradient each by reshape,
  all of it on one element (the first) by flax's max_pool, as by torch's max_pool2d."""
  x = jnp.ones((1, 2, 2, 1))
  split = jax.grad(lambda x: models.max_pool(x, by_reshape=True).sum())(x)
  np.testing.assert_array_equal(split, np.full((1, 2, 2, 1), 0.25))
  picked = jax.grad(lambda x: models.max_pool(x).sum())(x)
  np.testing.assert_array_equal(picked, np.array([1.0, 0, 0, 0]).reshape(1, 2, 2, 1))


def conv_bias_keys(params):
  """The paths of block*/conv*/bias."""
  return [path for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
          if "conv" in jax.tree_util.keystr(path) and path[-1].key == "bias"]


def without_conv_biases(tree):
  """A params-like tree less block*/conv*/bias (the convs before BatchNorm)."""
  return {name: ({conv: {k: v for k, v in leaves.items() if not (conv.startswith("conv")
                                                                  and k == "bias")}
                  for conv, leaves in value.items()} if name.startswith("block") else value)
          for name, value in tree.items()}


@pytest.mark.slow
def test_conv_bias_free_sgd_step_is_the_same_maths(x64):
  """One SGD step (steps.train_step, weight decay, momentum) of the biased model from non-zero
  conv biases and of the bias-free model from the same other params: the same loss; the same
  params after the step, less the biases; the same running variances, and running means apart by
  exactly momentum * bias (BatchNorm's batch mean holds the bias)."""
  info = datasets.DATASETS["cifar100"]
  model = models.VGGAttention(width_multiplier=TINY, dtype=jnp.float64, **SEED_TABLE)
  free = model.clone(conv_bias_free=True)
  tx = optim.sgd(0.1, 0.9, 1e-4)
  state = steps.initial_state(model, tx, jax.random.key(0), (32, 32, 3))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(state.params)
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_unflatten(treedef, [
      v + rng.standard_normal(v.shape) if k in conv_bias_keys(state.params) else v
      for k, v in leaves])
  assert all(params[b][c]["bias"].all() for b, convs in params.items() if b.startswith("block")
             for c in convs if c.startswith("conv"))
  state = state.replace(params=params, opt_state=tx.init(params))
  free_params = without_conv_biases(params)
  free_state = state.replace(params=free_params, opt_state=tx.init(free_params))
  batch = (rng.integers(0, 256, (8, 32, 32, 3), np.uint8), rng.integers(0, 100, 8, np.int32))
  after = {}
  for name, m, s in (("biased", model, state), ("free", free, free_state)):
    step = jax.jit(functools.partial(steps.train_step, m, tx, info))
    new, metrics = step(s, *batch, jax.random.key(1))
    after[name] = (new, metrics.compute()["loss"])
  (biased, biased_loss), (free_after, free_loss) = after["biased"], after["free"]
  exact.assert_trees_close(free_loss, biased_loss)
  exact.assert_trees_close(free_after.params, without_conv_biases(biased.params))
  print("conv_bias_free largest relative difference", relative_difference(
      (free_loss, free_after.params), (biased_loss, without_conv_biases(biased.params)), 0.0))
  shift = jax.tree.map(lambda _: 0.0, free_after.batch_stats)
  for block, convs in shift.items():
    for bn in convs:
      shift[block][bn] = {"mean": 0.1 * params[block][bn.replace("bn", "conv")]["bias"],
                          "var": 0.0}
  exact.assert_trees_close(jax.tree.map(jnp.add, free_after.batch_stats, shift),
                           biased.batch_stats)


def test_conv_bias_free_keeps_the_default_parameter_names():
  model = models.VGGAttention(width_multiplier=TINY, **SEED_TABLE)
  shapes = random_variables(model)
  free = random_variables(model.clone(conv_bias_free=True))
  assert "bias" in shapes["params"]["block1"]["conv0"]
  assert jax.tree.structure(free["params"]) == jax.tree.structure(
      without_conv_biases(shapes["params"]))
  assert len(conv_bias_keys(shapes["params"])) == 2 + 3 + 3 + 3 + 3 + 2


def test_conv_bias_free_exports_zero_biases_and_refuses_non_zero_ones():
  model = models.VGGAttention(width_multiplier=TINY, conv_bias_free=True, **SEED_TABLE)
  variables = random_variables(model)
  exported = torch_interop.to_torch(variables, model, "reference")
  biased = models.VGGAttention(width_multiplier=TINY, **SEED_TABLE)
  expected = torch_interop.to_torch(random_variables(biased), biased, "reference")
  assert exported.keys() == expected.keys()
  assert not exported["conv_block1.0.bias"].any() and exported["conv_block1.0.bias"].shape == (4,)
  round_trip = torch_interop.from_torch(exported, model)
  exact.assert_trees_close(jax.tree.map(np.float64, round_trip),
                           jax.tree.map(np.float64, dict(variables)))
  exported["conv_block2.3.bias"][1] = 0.5
  with pytest.raises(torch_interop.StateDictMismatchError,
                     match=r"conv_block2\.3\.bias.*conv_bias_free=True.*cannot hold.*field off"):
    torch_interop.from_torch(exported, model)
