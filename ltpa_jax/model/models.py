"""VGG19-BN in the reference layout, with optional "Learn To Pay Attention" heads.

Layout (NHWC, 32x32 input): blocks of [conv3x3 -> BatchNorm -> ReLU]; b1 2x64, b2 (2 or 3)x128,
b3 3x256 (= l1), maxpool, b4 3x512 (= l2), maxpool, b5 3x512 (= l3), maxpool, b6 2x512 with a
maxpool after each conv, then `dense` (1x1 conv with bias) = the global feature g.
Attention over l1..l3 by `LinearAttention` (the paper's) or `GridAttention` (Schlemper et al.'s
additive gate); both normalise and pool their scores with `normalise_and_pool`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# The choices of each model field (config_validation checks configs against them), by config name.
# Compute dtypes; float64 (tests of exact maths) needs jax_enable_x64.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}
NORMALISATIONS = ("softmax", "sigmoid")  # softmax over positions, sum of a*l | sigmoid, mean
COMPATIBILITIES = ("pc", "dp")  # pc: <u, l + g> | dp: <l, g>
AGGREGATIONS = ("concat", "indep")  # one classifier on all g_s | one per layer, averaged
ATTENTION_POSITIONS = ("before", "after")  # attend to l_s before or after its max-pool
ATTENDED_LAYERS = (1, 2, 3)  # l1 (block 3), l2 (block 4), l3 (block 5)
ATTENTION_TYPES = ("linear", "grid")  # LinearAttention | GridAttention, one gate per layer

# Channel widths of blocks b1..b6 and of g, before `width_multiplier`.
BLOCK_FEATURES = (64, 128, 256, 512, 512, 512)
GLOBAL_FEATURES = 512


# Initialisers by scheme: (kernels of convs and linears, BatchNorm scales).
INIT_SCHEMES = {
    # torch kaiming_normal_(mode="fan_in", nonlinearity="relu") (a plain normal); N(0, 0.01).
    "kaiming": (nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
                nn.initializers.normal(0.01)),
    # torch xavier_uniform_(gain=sqrt(2)); torch's default BatchNorm scale init before 1.2.
    "xavier": (nn.initializers.variance_scaling(2.0, "fan_avg", "uniform"),
               nn.initializers.uniform(1.0)),
}


def choice(name: str, value, allowed):
  """`value`, after checking it is one of `allowed` (a ValueError naming the field if not)."""
  if value not in allowed:
    raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
  return value


def _conv_init(scheme: str):
  return INIT_SCHEMES[choice("init_scheme", scheme, INIT_SCHEMES)][0]


def wide_dtype(dtype: Dtype):
  """The dtype of parameters, statistics and logits: float32, or float64 for a float64 model."""
  return jnp.promote_types(dtype, jnp.float32)


class BatchNorm(nn.Module):
  """BatchNorm with torch semantics: running var is updated with the unbiased batch variance.

  Statistics and normalisation are computed in float32 (float64 for a float64 model) whatever the
  compute dtype. `one_pass`: the variance as E[x^2] - E[x]^2, both means in one pass over x (the
  same maths; rounding differs), instead of E[(x - E[x])^2].
  """

  init_scheme: str = "kaiming"
  momentum: float = 0.1  # torch convention: new = (1 - momentum) * old + momentum * batch
  epsilon: float = 1e-5
  one_pass: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    features, wide = x.shape[-1], wide_dtype(self.dtype)
    _, scale_init = INIT_SCHEMES[choice("init_scheme", self.init_scheme, INIT_SCHEMES)]
    scale = self.param("scale", scale_init, (features,), wide)
    bias = self.param("bias", nn.initializers.zeros, (features,), wide)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), wide)
    running_var = self.variable("batch_stats", "var", jnp.ones, (features,), wide)
    x32 = x.astype(wide)
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = x32.mean(axes)
      if self.one_pass:
        var = jnp.maximum(jnp.square(x32).mean(axes) - jnp.square(mean), 0.0)
      else:
        var = jnp.square(x32 - mean).mean(axes)
      if not self.is_initializing():
        n = x32.size // features
        running_mean.value = (1 - self.momentum) * running_mean.value + self.momentum * mean
        running_var.value = ((1 - self.momentum) * running_var.value
                             + self.momentum * var * (n / max(n - 1, 1)))
    else:
      mean, var = running_mean.value, running_var.value
    y = (x32 - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
    return y.astype(self.dtype)


class ConvBlock(nn.Module):
  """`num_convs` x [conv3x3(pad 1, bias) -> BatchNorm -> ReLU], optionally a maxpool after each.

  `conv_bias_free`: the convs without bias. In training BatchNorm subtracts the batch mean, which
  cancels any bias (the same maths; the bias's gradient is rounding noise); in evaluation the
  running mean has absorbed it.
  """

  features: int
  num_convs: int
  pool_each: bool = False
  init_scheme: str = "kaiming"
  batchnorm_one_pass: bool = False
  conv_bias_free: bool = False
  max_pool_by_reshape: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(self.num_convs):
      x = nn.Conv(self.features, (3, 3), padding=1, use_bias=not self.conv_bias_free,
                  kernel_init=_conv_init(self.init_scheme), dtype=self.dtype,
                  param_dtype=wide_dtype(self.dtype), name=f"conv{i}")(x)
      x = nn.relu(BatchNorm(self.init_scheme, one_pass=self.batchnorm_one_pass, dtype=self.dtype,
                            name=f"bn{i}")(x, train))
      if self.pool_each:
        x = max_pool(x, self.max_pool_by_reshape)
    return x


def max_pool(x, by_reshape: bool = False):
  """2x2 max-pool, stride 2, of x (N,H,W,C) with even H and W.

  `by_reshape`: as a max over the axes of x reshaped to (N,H/2,2,W/2,2,C), whose gradient is
  elementwise (no select_and_scatter). Without ties the same maths. On a tie it splits the
  gradient equally among the tied elements (jnp.max's rule); flax's max_pool (reduce_window) and
  torch's max_pool2d give all of it to one of them, the first in the window. The model pools ReLU
  outputs, whose ties are mostly zeros, where ReLU's gradient is 0 either way.
  """
  if not by_reshape:
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def normalise_and_pool(c, l, normalisation: str, narrow_sums: bool = False):
  """(g_s, c, a) of raw scores c (N,H,W) over the local features l (N,H,W,C), as both attention
  types return them: softmax over positions and the sum of a*l, or sigmoid and the mean of a*l.

  The scores, map and descriptor are float32 (float64 for a float64 model). The sum of a*l is
  taken in float32 too (a float32 copy of l), or, with `narrow_sums`, of a rounded to l's dtype
  times l, accumulated in float32 (no wide copy of l; the same maths in float64).
  """
  choice("normalisation", normalisation, NORMALISATIONS)
  wide = wide_dtype(l.dtype)
  c = c.astype(wide)
  n, h, w = c.shape
  if normalisation == "softmax":
    a = jax.nn.softmax(c.reshape(n, h * w), axis=-1).reshape(n, h, w)
  else:
    a = jax.nn.sigmoid(c)
  if narrow_sums:
    g_s = jnp.einsum("nhw,nhwc->nc", a.astype(l.dtype), l, preferred_element_type=wide)
  else:
    g_s = jnp.einsum("nhw,nhwc->nc", a, l.astype(wide))
  return (g_s if normalisation == "softmax" else g_s / (h * w)), c, a


class U(nn.Module):
  """The compatibility vector u as a contraction: <u, x> over the channels of x (N,H,W,C), in
  x's dtype accumulated in float32 (float64 for a float64 model), shape (N,H,W,1). Its parameter
  is that of the 1x1 conv to one channel it replaces (`kernel`, (1, 1, C, 1), the same init)."""

  init_scheme: str = "kaiming"

  @nn.compact
  def __call__(self, x):
    wide = wide_dtype(x.dtype)
    kernel = self.param("kernel", _conv_init(self.init_scheme), (1, 1, x.shape[-1], 1), wide)
    return jnp.einsum("nhwc,co->nhwo", x, kernel[0, 0].astype(x.dtype),
                      preferred_element_type=wide)


def u_module(init_scheme: str, dtype, narrow_sums: bool, name: str | None = None) -> nn.Module:
  """The compatibility vector u (no bias): a 1x1 conv to one channel, or with `narrow_sums` `U`."""
  if narrow_sums:
    return U(init_scheme, name=name)
  return nn.Conv(1, (1, 1), use_bias=False, kernel_init=_conv_init(init_scheme), dtype=dtype,
                 param_dtype=wide_dtype(dtype), name=name)


class LinearAttention(nn.Module):
  """Attention of one local feature map l (N,H,W,C) given the global feature g (N,C).

  Returns (g_s, c, a): the attended descriptor (N,C), the raw compatibility scores (N,H,W) and
  the normalised map (N,H,W).
  """

  normalisation: str = "softmax"  # softmax over positions, sum of a*l | sigmoid, mean of a*l
  compatibility: str = "pc"  # pc: <u, l + g> | dp: <l, g>
  u: nn.Module | None = None  # the shared u (pc, `u_module`); None = own u
  init_scheme: str = "kaiming"
  narrow_sums: bool = False  # `normalise_and_pool`'s; u by `U`

  @nn.compact
  def __call__(self, l, g):
    choice("compatibility", self.compatibility, COMPATIBILITIES)
    if self.compatibility == "pc":
      u = self.u if self.u is not None else u_module(self.init_scheme, l.dtype, self.narrow_sums,
                                                     name="u")
      c = u(l + g[:, None, None, :])[..., 0]
    else:
      c = jnp.einsum("nhwc,nc->nhw", l, g.astype(l.dtype))
    return normalise_and_pool(c, l, self.normalisation, self.narrow_sums)


def upsample(x, size):
  """The map x (N,h,w,C) at the spatial size `size` (H, W): resized bilinearly (half-pixel
  centres, as torch's align_corners=False), or left 1x1 for the sum that uses it to broadcast."""
  if x.shape[1:3] == (1, 1):
    return x
  return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), "bilinear")


class GridAttention(nn.Module):
  """The additive attention gate of Schlemper et al. ("Attention Gated Networks") on one local
  feature map l (N,H,W,C) given the global feature g (N,C), or a map of it (N,h,w,C):

    c = phi(relu(W_l(l) + up(W_g(g))))

  W_l and W_g: 1x1 convs to `features` channels without bias; phi: a 1x1 conv to one channel with
  bias; `up` brings W_g(g) to l's spatial size. Returns (g_s, c, a) as LinearAttention does.
  """

  features: int = 256
  normalisation: str = "softmax"  # softmax over positions, sum of a*l | sigmoid, mean of a*l
  init_scheme: str = "kaiming"
  narrow_sums: bool = False  # `normalise_and_pool`'s

  @nn.compact
  def __call__(self, l, g):
    conv = lambda features, name, bias=False: nn.Conv(
        features, (1, 1), use_bias=bias, kernel_init=_conv_init(self.init_scheme), dtype=l.dtype,
        param_dtype=wide_dtype(l.dtype), name=name)
    g = g.reshape(g.shape[0], 1, 1, -1) if g.ndim == 2 else g
    gate = conv(self.features, "W_l")(l) + upsample(conv(self.features, "W_g")(g), l.shape[1:3])
    c = conv(1, "phi", bias=True)(nn.relu(gate))[..., 0]
    return normalise_and_pool(c, l, self.normalisation, self.narrow_sums)


class VGGAttention(nn.Module):
  """VGG19-BN (reference layout) with optional attention over l1..l3.

  l1's 256 channels are projected to g's width (`projector`, 1x1 conv without bias) for either
  attention type, so that every descriptor g_s has g's width. Grid gates are per layer: they take
  neither `shared_u` nor `compatibility="dp"` (a ValueError).

  Returns `(logits, maps)`: logits (N, num_classes) float32 (float64 for a float64 model) and, per
  attended layer s,
  maps[f"l{s}"] = {"c": raw scores (N,H,W), "a": normalised map (N,H,W)}.
  """

  num_classes: int = 100
  attention: bool = True
  attention_type: str = "linear"  # linear: LinearAttention | grid: GridAttention
  attn_features: int = 256  # grid: the gate's hidden channels, before width_multiplier
  normalisation: str = "softmax"  # softmax | sigmoid
  compatibility: str = "pc"  # pc | dp
  attended_layers: Sequence[int] = (1, 2, 3)
  aggregation: str = "concat"  # concat: one classifier | indep: one per layer, averaged
  shared_u: bool = False
  attention_position: str = "before"  # before | after the max-pools
  b2_convs: int = 2
  width_multiplier: float = 1.0
  init_scheme: str = "kaiming"
  batchnorm_one_pass: bool = False  # BatchNorm's variance as E[x^2] - E[x]^2 (see BatchNorm)
  attention_narrow_sums: bool = False  # attention's sums in dtype, f32 accumulation; u an einsum
  max_pool_by_reshape: bool = False  # max-pools as reshape + max (see max_pool)
  conv_bias_free: bool = False  # no bias on the convs before BatchNorm (see ConvBlock)
  dtype: Dtype = jnp.float32

  def _width(self, features: int) -> int:
    return max(1, int(round(features * self.width_multiplier)))

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.shape[1:3] != (32, 32):
      raise ValueError(f"VGGAttention expects 32x32 inputs, got {x.shape[1:3]}; pad or resize.")
    choice("attention_position", self.attention_position, ATTENTION_POSITIONS)
    choice("aggregation", self.aggregation, AGGREGATIONS)
    choice("attention_type", self.attention_type, ATTENTION_TYPES)
    for s in self.attended_layers:
      choice("attended_layers", s, ATTENDED_LAYERS)
    x, wide = x.astype(self.dtype), wide_dtype(self.dtype)
    conv_kwargs = dict(kernel_init=_conv_init(self.init_scheme), dtype=self.dtype,
                       param_dtype=wide)
    block = lambda s, n, **kw: ConvBlock(self._width(BLOCK_FEATURES[s - 1]), n,
                                         init_scheme=self.init_scheme,
                                         batchnorm_one_pass=self.batchnorm_one_pass,
                                         conv_bias_free=self.conv_bias_free,
                                         max_pool_by_reshape=self.max_pool_by_reshape,
                                         dtype=self.dtype, name=f"block{s}", **kw)
    x = block(1, 2)(x, train)
    x = block(2, self.b2_convs)(x, train)
    local = {}
    for s, num_convs in ((3, 3), (4, 3), (5, 3)):
      x = block(s, num_convs)(x, train)
      pooled = max_pool(x, self.max_pool_by_reshape)
      local[s - 2] = x if self.attention_position == "before" else pooled
      x = pooled
    x = block(6, 2, pool_each=True)(x, train)
    g = nn.Conv(self._width(GLOBAL_FEATURES), (1, 1), name="dense", **conv_kwargs)(x)
    g = g.reshape(g.shape[0], -1)

    classifier = lambda name: nn.Dense(self.num_classes, name=name, **conv_kwargs)
    if not self.attention:
      return classifier("classifier")(g).astype(wide), {}

    if self.attention_type == "grid":
      if self.shared_u or choice("compatibility", self.compatibility, COMPATIBILITIES) == "dp":
        raise ValueError("attention_type='grid' has its own gate per layer: it takes neither "
                         "shared_u=True nor compatibility='dp'")
      attention = lambda s: GridAttention(self._width(self.attn_features), self.normalisation,
                                          self.init_scheme, self.attention_narrow_sums,
                                          name=f"attention{s}")
    else:
      shared_u = u_module(self.init_scheme, self.dtype, self.attention_narrow_sums, name="u") if (
          self.shared_u and self.compatibility == "pc") else None
      attention = lambda s: LinearAttention(self.normalisation, self.compatibility, shared_u,
                                            self.init_scheme, self.attention_narrow_sums,
                                            name=f"attention{s}")
    descriptors, maps = [], {}
    for s in self.attended_layers:
      l = local[s]
      if l.shape[-1] != g.shape[-1]:  # l1 has 256 channels: project to g's width.
        l = nn.Conv(g.shape[-1], (1, 1), use_bias=False, name="projector", **conv_kwargs)(l)
      g_s, c, a = attention(s)(l, g)
      descriptors.append(g_s)
      maps[f"l{s}"] = {"c": c, "a": a}

    if self.aggregation == "concat":
      logits = classifier("classifier")(jnp.concatenate(descriptors, -1).astype(self.dtype))
      return logits.astype(wide), maps
    # indep: average the per-layer class probabilities; return their log as logits.
    log_probs = jnp.stack([
        jax.nn.log_softmax(classifier(f"classifier{s}")(d.astype(self.dtype)).astype(wide))
        for s, d in zip(self.attended_layers, descriptors)])
    return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(len(descriptors)), maps


def create_model(m, num_classes: int) -> VGGAttention:
  """Builds the model from a config's `model` fields, each taken by its name (dtype by its name
  in DTYPES), and the dataset's number of classes."""
  settings = {name: tuple(value) if isinstance(value, (list, tuple)) else value
              for name, value in m.items()}
  settings["dtype"] = DTYPES[choice("dtype", settings["dtype"], DTYPES)]
  return VGGAttention(num_classes=num_classes, **settings)
