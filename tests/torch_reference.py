"""The reference models in PyTorch (NCHW), written for the interop tests.

VGG19-BN in the reference layout (DEVELOPERS.md) with optional "(VGG-att3)-concat-pc" attention
over l1..l3: before or after the max-pools, softmax or sigmoid normalisation, concat or indep
aggregation, scores by a shared or separate u, or by Schlemper et al.'s grid gates (`GridGate`).
Its attribute (state_dict) names follow either scheme of `ltpa_jax.model.torch_interop` ("reference" or
"saoyan"). Like the reference module, the "reference" scheme creates `projector` and the u's also
without attention, unused then; the SaoYan port creates them only with attention.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3), (512, 2))  # (features, convs)


def width(features: int, multiplier: float) -> int:
  return max(1, int(round(features * multiplier)))


def conv_block(in_features: int, features: int, num_convs: int, pool_each: bool) -> nn.Sequential:
  """[Conv3x3 -> BN -> ReLU (-> MaxPool)] * num_convs."""
  layers = []
  for i in range(num_convs):
    layers += [nn.Conv2d(features if i else in_features, features, 3, padding=1),
               nn.BatchNorm2d(features), nn.ReLU()]
    if pool_each:
      layers.append(nn.MaxPool2d(2, 2))
  return nn.Sequential(*layers)


class Op(nn.Module):
  """The SaoYan port's wrapper modules (ConvBlock, ProjectorBlock, ...): the layers are `.op`."""

  def __init__(self, op: nn.Module):
    super().__init__()
    self.op = op

  def forward(self, x):
    return self.op(x)


class GridGate(nn.Module):
  """Scores c = phi(relu(W_l(l) + up(W_g(g)))) (N, 1, H, W); up: bilinear, align_corners=False."""

  def __init__(self, features_l: int, features_g: int, features: int):
    super().__init__()
    self.W_l = nn.Conv2d(features_l, features, 1, bias=False)  # pylint: disable=invalid-name
    self.W_g = nn.Conv2d(features_g, features, 1, bias=False)  # pylint: disable=invalid-name
    self.phi = nn.Conv2d(features, 1, 1)

  def forward(self, l, g):
    g = F.interpolate(self.W_g(g), size=l.shape[2:], mode="bilinear", align_corners=False)
    return self.phi(F.relu(self.W_l(l) + g))


class ReferenceVGG(nn.Module):
  """forward(x) -> (logits, [(c_s, a_s) per attended layer, each (N, H, W)])."""

  def __init__(self, scheme="reference", num_classes=100, channels=3, attention=True,
               normalisation="softmax", shared_u=False, b2_convs=2, width_multiplier=1.0,
               attention_type="linear", attn_features=256, attention_position="before",
               aggregation="concat"):
    super().__init__()
    saoyan = scheme == "saoyan"
    wrap = Op if saoyan else (lambda module: module)
    self.attention, self.normalisation = attention, normalisation
    self.grid = attention and attention_type == "grid"
    self.after, self.indep = attention_position == "after", aggregation == "indep"
    features = channels
    for s, (f, num_convs) in enumerate(BLOCKS, 1):
      f = width(f, width_multiplier)
      num_convs = b2_convs if s == 2 else num_convs
      self.add_module(f"conv_block{s}", wrap(conv_block(features, f, num_convs, pool_each=s == 6)))
      features = f
    g = width(512, width_multiplier)
    self.g_name = "dense" if saoyan else "adaptive_conv"
    self.add_module(self.g_name, nn.Conv2d(features, g, 1))
    classifier = "classify" if saoyan else "classifier"
    self.classifier_names = [f"{classifier}{s}" for s in (1, 2, 3)] if self.indep else [classifier]
    for name in self.classifier_names:
      self.add_module(name, nn.Linear(3 * g if attention and not self.indep else g, num_classes))
    if attention or not saoyan:
      self.projector = wrap(nn.Conv2d(width(256, width_multiplier), g, 1, bias=False))
    if self.grid:
      self.gate_names = [f"{'attn' if saoyan else 'grid'}{s}" for s in (1, 2, 3)]
      for name in self.gate_names:
        self.add_module(name, GridGate(g, g, width(attn_features, width_multiplier)))
    elif attention or not saoyan:
      u_prefix = "attn" if saoyan else "op"
      self.gate_names = [u_prefix] * 3 if shared_u else [f"{u_prefix}{s}" for s in (1, 2, 3)]
      for name in dict.fromkeys(self.gate_names):
        self.add_module(name, wrap(nn.Conv2d(g, 1, 1, bias=False)))

  def forward(self, x):
    x = self.conv_block2(self.conv_block1(x))
    local = []
    for s in (3, 4, 5):
      x = getattr(self, f"conv_block{s}")(x)
      pooled = F.max_pool2d(x, 2, 2)
      local.append(pooled if self.after else x)
      x = pooled
    g = getattr(self, self.g_name)(self.conv_block6(x))  # (N, C, 1, 1)
    classifiers = [getattr(self, name) for name in self.classifier_names]
    if not self.attention:
      return classifiers[0](g.flatten(1)), []
    local[0] = self.projector(local[0])
    descriptors, maps = [], []
    for l, name in zip(local, self.gate_names):
      gate = getattr(self, name)
      c = gate(l, g) if self.grid else gate(l + g)  # (N, 1, H, W)
      if self.normalisation == "softmax":
        a = F.softmax(c.flatten(1), dim=1).view_as(c)
        descriptors.append((a * l).sum((2, 3)))
      else:
        a = torch.sigmoid(c)
        descriptors.append((a * l).mean((2, 3)))
      maps.append((c[:, 0], a[:, 0]))
    if not self.indep:
      return classifiers[0](torch.cat(descriptors, 1)), maps
    log_probs = [F.log_softmax(f(d), 1) for f, d in zip(classifiers, descriptors)]
    return torch.logsumexp(torch.stack(log_probs), 0) - math.log(len(log_probs)), maps


def randomise(model: nn.Module, seed: int) -> nn.Module:
  """Random weights and BatchNorm parameters and running statistics, in place."""
  gen = torch.Generator().manual_seed(seed)
  normal = lambda t, std: t.copy_(torch.randn(t.shape, generator=gen) * std)
  uniform = lambda t, low, high: t.copy_(low + (high - low) * torch.rand(t.shape, generator=gen))
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (nn.Conv2d, nn.Linear)):
        normal(module.weight, (2 / module.weight[0].numel()) ** 0.5)
        if module.bias is not None:
          normal(module.bias, 0.1)
      elif isinstance(module, nn.BatchNorm2d):
        uniform(module.weight, 0.5, 1.5)
        normal(module.bias, 0.1)
        normal(module.running_mean, 0.2)
        uniform(module.running_var, 0.5, 2.0)
        module.num_batches_tracked.fill_(7)
  return model
