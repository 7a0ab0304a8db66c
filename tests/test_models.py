"""Model shapes, attention normalisation and parameter counts of the reference layout."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from configs import vgg19_att
from configs import vgg19_att_grid
from ltpa_jax.model import models
from ltpa_jax.model import torch_interop
from tests import exact
from tests import sampling

TINY = 1 / 16


def init(model, channels=3):
  x = jnp.zeros((2, 32, 32, channels))
  return jax.jit(lambda: model.init(jax.random.key(0), x, train=False))()


def apply(model, variables, train, seed=1, channels=3):
  x = jax.random.normal(jax.random.key(seed), (2, 32, 32, channels))
  if train:
    return jax.jit(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"])[0])(variables)
  return jax.jit(lambda v: model.apply(v, x, train=False))(variables)


def torch_layout_param_count(num_classes, b2_convs=2, attention=None, in_channels=3):
  """Parameters of the PyTorch reference layout (weights and biases; BN weight and bias)."""
  convs = ([(in_channels, 64), (64, 64)] + [(64, 128)] + [(128, 128)] * (b2_convs - 1)
           + [(128, 256), (256, 256), (256, 256)] + [(256, 512)] + [(512, 512)] * 7)
  count = sum(9 * i * o + o + 2 * o for i, o in convs)  # conv weight+bias, BN weight+bias
  count += 512 * 512 + 512  # dense (1x1 conv with bias)
  if attention is None:
    return count + 512 * num_classes + num_classes
  layers, shared_u, compatibility = attention
  if 1 in layers:
    count += 256 * 512  # projector, no bias
  if compatibility == "pc":
    count += 512 * (1 if shared_u else len(layers))  # u, no bias
  return count + 512 * len(layers) * num_classes + num_classes


def count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("kwargs,layout,used,torch_total", [
    # Without attention the reference module adds its unused projector (256 * 512) and u's (512
    # each): op1..op3, or one shared op.
    (dict(attention=False), dict(), 19_758_756, 19_891_364),
    (dict(attention=False, shared_u=True), dict(), 19_758_756, 19_890_340),
    (dict(attention=False, b2_convs=3), dict(b2_convs=3), 19_906_596, 20_039_204),
    (dict(), dict(attention=((1, 2, 3), False, "pc")), 19_993_764, 19_993_764),
    (dict(shared_u=True, normalisation="sigmoid", b2_convs=3),
     dict(b2_convs=3, attention=((1, 2, 3), True, "pc")), 20_140_580, 20_140_580),
    (dict(compatibility="dp", attended_layers=(2, 3)),
     dict(attention=((2, 3), False, "dp")), 19_809_956, 19_809_956),
])
def test_parameter_counts_match_the_pytorch_reference_layout(kwargs, layout, used, torch_total):
  """Parameters the model uses, and those of its exported PyTorch reference module."""
  model = models.VGGAttention(num_classes=100, **kwargs)
  variables = jax.eval_shape(lambda: init(model))
  assert count(variables["params"]) == torch_layout_param_count(100, **layout) == used
  exported = torch_interop.to_torch(
      jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), variables), model, "reference")
  assert sum(v.size for k, v in exported.items() if k.endswith((".weight", ".bias"))) == torch_total
  # BatchNorm running mean and var: one pair per conv of blocks b1..b6.
  num_convs = 2 + layout.get("b2_convs", 2) + 3 + 3 + 3 + 2
  widths = [64, 64] + [128] * layout.get("b2_convs", 2) + [256] * 3 + [512] * 8
  assert len(widths) == num_convs
  assert count(variables["batch_stats"]) == 2 * sum(widths)


def test_grid_gates_replace_the_u_by_their_weights():
  """configs/vgg19_att_grid.py: vgg19_att's model less its shared u, plus per layer W_l, W_g
  (512 -> 256 each: l1 is projected to 512 first) and phi (256 -> 1 with bias)."""
  features, width = 256, 512
  gate = width * features + width * features + features + 1
  params = lambda model: count(jax.eval_shape(lambda: init(model))["params"])
  linear = params(models.create_model(vgg19_att.get_config().model, 100))
  grid = params(models.create_model(vgg19_att_grid.get_config().model, 100))
  assert linear == torch_layout_param_count(
      100, b2_convs=3, attention=((1, 2, 3), True, "pc")) == 20_140_580
  assert grid == linear - width + 3 * gate == 20_927_271
  # Separate u's, l2 and l3 after pooling: a gate in place of each u.
  linear, grid = (params(models.VGGAttention(attended_layers=(2, 3), attention_position="after",
                                             attention_type=kind)) for kind in ("linear", "grid"))
  assert grid - linear == 2 * (gate - width)


def test_grid_model_has_a_gate_per_layer_of_scaled_width_and_refuses_shared_u_and_dp():
  model = models.VGGAttention(num_classes=7, attention_type="grid", attn_features=128,
                              attended_layers=(1, 3), width_multiplier=TINY)
  variables = jax.eval_shape(lambda: init(model))
  params = variables["params"]
  assert jax.tree.map(lambda x: x.shape, {s: params[f"attention{s}"] for s in (1, 3)}) == {
      s: {"W_l": {"kernel": (1, 1, 32, 8)}, "W_g": {"kernel": (1, 1, 32, 8)},
          "phi": {"kernel": (1, 1, 8, 1), "bias": (1,)}} for s in (1, 3)}
  assert "u" not in params and "attention2" not in params and "projector" in params
  logits, maps = jax.eval_shape(lambda v: apply(model, v, train=False), variables)
  assert logits.shape == (2, 7) and maps["l3"]["a"].shape == (2, 8, 8)
  for refused in (dict(shared_u=True), dict(compatibility="dp")):
    with pytest.raises(ValueError, match="attention_type='grid' has its own gate per layer"):
      init(models.VGGAttention(attention_type="grid", width_multiplier=TINY, **refused))


@pytest.mark.parametrize("normalisation", models.NORMALISATIONS)
def test_grid_gate_computes_its_formula(x64, normalisation):
  """c = phi(relu(W_l l + W_g g)) against numpy, then softmax and sum or sigmoid and mean."""
  rng = np.random.default_rng(0)
  l, g = rng.normal(size=(2, 5, 4, 6)), rng.normal(size=(2, 3))
  gate = models.GridAttention(features=7, normalisation=normalisation)
  shapes = jax.eval_shape(gate.init, jax.random.key(0), l, g)
  variables = jax.tree.map(lambda x: rng.normal(size=x.shape), shapes)  # phi's bias too
  p = {name: {k: v[0, 0] if k == "kernel" else v for k, v in leaves.items()}
       for name, leaves in variables["params"].items()}  # 1x1 kernels as matrices
  hidden = np.maximum(l @ p["W_l"]["kernel"] + (g @ p["W_g"]["kernel"])[:, None, None], 0)
  c = (hidden @ p["phi"]["kernel"] + p["phi"]["bias"])[..., 0]
  if normalisation == "softmax":
    a = np.exp(c) / np.exp(c).sum((1, 2), keepdims=True)
    g_s = np.einsum("nhw,nhwc->nc", a, l)
  else:
    a = 1 / (1 + np.exp(-c))
    g_s = np.einsum("nhw,nhwc->nc", a, l) / (5 * 4)
  exact.assert_trees_close(gate.apply(variables, l, g), (g_s, c, a))


def test_upsample_is_bilinear_with_half_pixel_centres_and_leaves_a_1x1_map(x64):
  x = np.arange(8.0).reshape(1, 2, 2, 2)
  m = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])  # torch's align_corners=False
  exact.assert_trees_close(models.upsample(x, (4, 4)), np.einsum("ih,jw,nhwc->nijc", m, m, x))
  assert models.upsample(x[:, :1, :1], (4, 4)).shape == (1, 1, 1, 2)  # broadcast by the sum


# Every pair of values of the six binary knobs appears in some row (an L8 orthogonal array).
L8 = ["000000", "000111", "011001", "011110", "101010", "101101", "110011", "110100"]
CHOICES = (("softmax", "sigmoid"), ("pc", "dp"), ("concat", "indep"), ("before", "after"),
           ((1, 2, 3), (2, 3)), (False, True))
KNOBS = [tuple(choice[int(bit)] for choice, bit in zip(CHOICES, row)) for row in L8]


@pytest.mark.parametrize("normalisation,compatibility,aggregation,position,layers,shared_u", KNOBS)
def test_output_shapes_for_every_knob(normalisation, compatibility, aggregation, position, layers,
                                      shared_u):
  model = models.VGGAttention(
      num_classes=7, normalisation=normalisation, compatibility=compatibility,
      aggregation=aggregation, attention_position=position, attended_layers=layers,
      shared_u=shared_u, width_multiplier=TINY)
  variables = jax.eval_shape(lambda: init(model))
  logits, maps = jax.eval_shape(lambda v: apply(model, v, train=True), variables)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  sizes = {1: 32, 2: 16, 3: 8} if position == "before" else {1: 16, 2: 8, 3: 4}
  assert sorted(maps) == [f"l{s}" for s in layers]
  for s in layers:
    assert maps[f"l{s}"]["c"].shape == maps[f"l{s}"]["a"].shape == (2, sizes[s], sizes[s])
  params = variables["params"]
  own_u = compatibility == "pc" and not shared_u
  assert ("u" in params) == (compatibility == "pc" and shared_u)
  assert all(("u" in params.get(f"attention{s}", {})) == own_u for s in layers)
  assert ("projector" in params) == (1 in layers)


@pytest.mark.slow
def test_softmax_maps_sum_to_one_and_sigmoid_maps_lie_in_the_open_unit_interval(x64):
  for normalisation in ("softmax", "sigmoid"):
    model = models.VGGAttention(num_classes=5, normalisation=normalisation, width_multiplier=TINY,
                                dtype=jnp.float64)
    variables = init(model)
    _, maps = apply(model, variables, train=False)
    for layer in maps.values():
      a = np.asarray(layer["a"])
      if normalisation == "softmax":
        exact.assert_trees_close(a.sum((1, 2)), np.ones(2))
        exact.assert_trees_close(
            a, np.asarray(jax.nn.softmax(layer["c"].reshape(2, -1)).reshape(a.shape)))
      else:
        assert (a > 0).all() and (a < 1).all()
        exact.assert_trees_close(a, np.asarray(jax.nn.sigmoid(layer["c"])))


@pytest.mark.slow
def test_indep_logits_are_the_log_of_averaged_class_probabilities(x64):
  model = models.VGGAttention(num_classes=5, aggregation="indep", width_multiplier=TINY,
                              dtype=jnp.float64)
  logits, _ = apply(model, init(model), train=False)
  exact.assert_trees_close(np.exp(logits).sum(-1), np.ones(2))


@pytest.mark.slow
def test_no_attention_returns_no_maps_and_grayscale_inputs_work():
  model = models.VGGAttention(num_classes=10, attention=False, width_multiplier=TINY)
  variables = init(model, channels=1)
  logits, maps = apply(model, variables, train=False, channels=1)
  assert logits.shape == (2, 10) and maps == {}
  assert variables["params"]["block1"]["conv0"]["kernel"].shape == (3, 3, 1, 4)


@pytest.mark.slow
def test_bfloat16_computes_in_bfloat16_but_keeps_float32_params_and_statistics():
  model = models.VGGAttention(num_classes=5, width_multiplier=TINY, dtype=jnp.bfloat16)
  variables = init(model)
  assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  (logits, _), updates = jax.jit(lambda v: model.apply(
      v, jnp.ones((2, 32, 32, 3)), train=True, mutable=["batch_stats"]))(variables)
  assert logits.dtype == jnp.float32
  assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("one_pass", [False, True])
def test_batchnorm_updates_running_statistics_like_torch(one_pass, x64):
  """Either way of computing the variance is torch's maths (float64)."""
  bn = models.BatchNorm(momentum=0.1, one_pass=one_pass, dtype=jnp.float64)
  x = jax.random.normal(jax.random.key(0), (4, 3, 3, 2)) * 2 + 1
  variables = bn.init(jax.random.key(1), x, train=False)
  y, updates = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  flat = np.asarray(x).reshape(-1, 2)
  exact.assert_trees_close(updates["batch_stats"], {"mean": 0.1 * flat.mean(0),
                                                    "var": 0.9 + 0.1 * flat.var(0, ddof=1)})
  scale = np.asarray(variables["params"]["scale"])
  expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5) * scale
  exact.assert_trees_close(np.asarray(y).reshape(-1, 2), expected,
                           atol=exact.noise_floor(expected))


# Each scheme's laws, of a kernel's (fan_in, fan_out) and of BatchNorm scales, as torch draws them.
INIT_LAWS = {
    # kaiming_normal_(mode="fan_in", nonlinearity="relu"): N(0, 2 / fan_in); scales N(0, 0.01).
    "kaiming": (lambda fan_in, fan_out: stats.norm(0, np.sqrt(2 / fan_in)), stats.norm(0, 0.01)),
    # xavier_uniform_(gain=sqrt(2)): U(-a, a), a = sqrt(2) sqrt(6 / (fan_in + fan_out)); U(0, 1).
    "xavier": (lambda fan_in, fan_out: stats.uniform(-(a := np.sqrt(12 / (fan_in + fan_out))),
                                                     2 * a), stats.uniform(0, 1)),
}


@pytest.mark.slow
@pytest.mark.parametrize("init_scheme", ["kaiming", "xavier"])
def test_initialisation_draws_each_scheme_with_its_fans_and_distribution(init_scheme):
  """Kernels of a conv (3x3, 128 -> 256), a 1x1 conv (256 -> 512) and a linear (1536 -> 100),
  where fan_in and fan_out differ, and all BatchNorm scales, against their laws by the
  Kolmogorov-Smirnov statistic, bounded for each sample size at a false-alarm rate of 1e-6
  (`sampling`): fan_out for fan_in, or uniform for normal (or the reverse), exceeds it."""
  params = init(models.VGGAttention(num_classes=100, init_scheme=init_scheme))["params"]
  kernel_law, scale_law = INIT_LAWS[init_scheme]
  kernels = {"conv 3x3 128->256": params["block3"]["conv0"]["kernel"],
             "conv 1x1 256->512": params["projector"]["kernel"],
             "linear 1536->100": params["classifier"]["kernel"]}
  fans = lambda k: (np.prod(k.shape[:-1]), np.prod(k.shape[:-2]) * k.shape[-1])  # (.., in, out)
  samples = {name: (np.ravel(k), kernel_law(*fans(k))) for name, k in kernels.items()}
  samples["BatchNorm scales"] = (np.concatenate([
      np.ravel(bn["scale"]) for block in params.values() for name, bn in block.items()
      if name.startswith("bn")]), scale_law)
  for name, (x, law) in samples.items():
    statistic, bound = stats.kstest(x, law.cdf).statistic, sampling.ks_bound(x.size)
    assert statistic <= bound, (f"{name}: KS statistic {statistic:.4f} > {bound:.4f} for "
                                f"{x.size} draws (std {x.std():.4g}, expected {law.std():.4g})")
  assert not np.asarray(params["block3"]["conv0"]["bias"]).any()
  assert not np.asarray(params["classifier"]["bias"]).any()


def test_inputs_that_are_not_32x32_are_rejected_with_a_hint():
  model = models.VGGAttention(width_multiplier=TINY)
  with pytest.raises(ValueError, match="32x32"):
    model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
