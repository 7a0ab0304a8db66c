"""torch_interop and evaluate_torch: naming schemes, exact round trips, parity with PyTorch."""

import copy
import functools
import pathlib
import re
import subprocess
import sys

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltpa_jax.base import devices
from ltpa_jax.data import datasets
from ltpa_jax import evaluate_torch
from ltpa_jax.data import input_pipeline
from ltpa_jax.model import models
from ltpa_jax.core import optim
from ltpa_jax.core import steps
from ltpa_jax.model import torch_interop

REPO = pathlib.Path(__file__).resolve().parents[1]
# The reference table's runs, and the later code's softmax variant (kwargs of both models).
SEED_TABLE = dict(normalisation="sigmoid", shared_u=True, b2_convs=3)
SOFTMAX_SEPARATE_U = dict(normalisation="softmax", shared_u=False, b2_convs=2)
# Grid attention gates (no reference result), between them every value of normalisation,
# attention_position and aggregation.
GRID = dict(attention_type="grid", attn_features=128, normalisation="softmax")
GRID_AFTER_INDEP = dict(attention_type="grid", normalisation="sigmoid", attention_position="after",
                        aggregation="indep", b2_convs=3)
TINY = 1 / 16
# JAX float64 vs torch float64, per tensor relative to max|torch64|. Measured at most 4.9e-14
# (forward, train mode; 6.4e-14 at full width), 3.7e-14 after one SGD step, 1.4e-13 after two.
F64_RTOL = 1e-12
# JAX float32 may be NOISE_FACTOR times as far from torch float64, relative to a tensor's scale,
# as torch float32 is at most over all the tensors of the same computation (its noise level: one
# tensor alone, such as the scalar loss, can land within an ulp by chance), plus one float32 ulp.
# Measured (1 core), the ratio (|jax32 - torch64| / scale - ulp) / that noise level is at most 1.7
# in the forwards and 0.99 in the SGD steps (noise levels 3e-6 to 9e-5). Per tensor, torch float32's
# own error was too small a floor: the loss after two SGD steps, 2 ulps off in JAX float32, failed
# under taskset -c 0 against torch's lucky 0.1 ulp.
NOISE_FACTOR = 4
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def ref():
  """tests/torch_reference.py, the reference models in PyTorch."""
  pytest.importorskip("torch", reason="PyTorch is absent: pip install torch==2.13.0 (CPU build) "
                      "to run the PyTorch parity tests")
  from tests import torch_reference  # pylint: disable=import-outside-toplevel
  return torch_reference


def assert_matches_torch(runs, context):
  """`runs` jax64, jax32, torch64, torch32: flat dicts of arrays with the same names.

  Per tensor (maxima over it, scale = max|torch64|): |jax64 - torch64| <= F64_RTOL * scale, and
  |jax32 - torch64| <= (NOISE_FACTOR * noise + EPS32) * scale, where noise is the largest
  |torch32 - torch64| / scale over the tensors.
  """
  expected = runs["torch64"]
  assert all(run.keys() == expected.keys() for run in runs.values())
  scale = {name: np.abs(np.asarray(x, np.float64)).max() for name, x in expected.items()}
  error = {k: relative_errors(v, expected) for k, v in runs.items()}
  noise = max(error["torch32"].values())
  for name in expected:
    assert error["jax64"][name] <= F64_RTOL, (
        f"{context} {name}: float64 error {error['jax64'][name]:.3g} of scale {scale[name]:.3g}")
    assert error["jax32"][name] <= NOISE_FACTOR * noise + EPS32, (
        f"{context} {name}: JAX float32 error {error['jax32'][name]:.3g} of scale "
        f"{scale[name]:.3g}, torch float32's noise {noise:.3g}")


def relative_errors(actual, expected) -> dict[str, float]:
  """Per name of two flat dicts of arrays: max |actual - expected| / max |expected|."""
  expected = {name: np.asarray(x, np.float64) for name, x in expected.items()}
  return {name: np.abs(np.asarray(actual[name], np.float64) - x).max() / np.abs(x).max()
          for name, x in expected.items()}


def state_dict(torch_model) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}


def tensors(state_dict_, suffixes=(".weight", ".bias", ".running_mean", ".running_var")):
  """The state_dict's tensors with these name suffixes (no num_batches_tracked), in float64."""
  return {k: np.asarray(v, np.float64) for k, v in state_dict_.items() if k.endswith(suffixes)}


def torch_input(ref, torch_model, images_nhwc):
  """The NCHW tensor of images, in the torch model's dtype."""
  x = ref.torch.from_numpy(np.transpose(images_nhwc, (0, 3, 1, 2)).copy())  # writable
  return x.to(next(torch_model.parameters()).dtype)


def torch_forward(ref, torch_model, images_nhwc, train_mode):
  """Logits and maps {"l{s}": {"c", "a"}} of the torch model, in its dtype."""
  torch_model.train(train_mode)
  with ref.torch.no_grad():
    logits, maps = torch_model(torch_input(ref, torch_model, images_nhwc))
  return logits.numpy(), {f"l{s}": {"c": c.numpy(), "a": a.numpy()}
                          for s, (c, a) in zip((1, 2, 3), maps)}


def random_variables(model, channels=3, seed=0):
  """Variables of `model` with every leaf random (BN statistics included)."""
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          jnp.zeros((1, 32, 32, channels)))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(rng.uniform(0.5, 1.5, x.shape), x.dtype), shapes)


@pytest.mark.parametrize("scheme, variant, width", [
    ("reference", SEED_TABLE, 1 / 8),
    ("saoyan", SOFTMAX_SEPARATE_U, 1 / 8),
    ("reference", dict(attention=False, b2_convs=3), TINY),
], ids=["seed_table-reference", "softmax_separate_u-saoyan", "vgg19-reference"])
@pytest.mark.slow
def test_forward_matches_pytorch(ref, scheme, variant, width):
  """Eval mode, then train mode (batch statistics) and its running statistics, in float64 and 32.

  Width 1/8: at full width the float64 forwards cost ~25 s more on CPU (measured 6.4e-14 there).
  """
  torch64 = ref.randomise(ref.ReferenceVGG(scheme, width_multiplier=width, **variant), seed=0)
  torch64.double()
  torch32, start = copy.deepcopy(torch64).float(), state_dict(torch64)
  images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
  runs = {}
  for name, dtype in (("jax64", jnp.float64), ("jax32", jnp.float32)):
    with jax.enable_x64(dtype == jnp.float64):
      model = models.VGGAttention(width_multiplier=width, dtype=dtype, **variant)
      variables = torch_interop.from_torch(start, model)
      assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(dtype)}
      outputs = {}
      for mode in ("eval", "train"):  # eval first: it keeps the statistics
        (logits, maps), updates = jax.jit(functools.partial(
            model.apply, train=mode == "train", mutable=["batch_stats"]))(variables, images)
        outputs[mode] = {"logits": logits, "maps": maps}
      exported = torch_interop.to_torch(variables | updates, model, scheme)
      runs[name] = flax.traverse_util.flatten_dict(outputs, sep="/") | tensors(
          exported, ("running_mean", "running_var"))
  for name, torch_model in (("torch64", torch64), ("torch32", torch32)):
    outputs = {}
    for mode in ("eval", "train"):
      logits, maps = torch_forward(ref, torch_model, images, mode == "train")
      outputs[mode] = {"logits": logits, "maps": maps}
    runs[name] = flax.traverse_util.flatten_dict(outputs, sep="/") | tensors(
        state_dict(torch_model), ("running_mean", "running_var"))
  assert_matches_torch(runs, "forward")


@pytest.mark.parametrize("scheme, variant", [("reference", GRID), ("saoyan", GRID_AFTER_INDEP)],
                         ids=["grid-reference", "grid_after_indep-saoyan"])
def test_grid_gates_match_pytorch_in_float64(ref, x64, scheme, variant):
  """Flax variables exported by to_torch into the PyTorch model with grid gates, which loads them
  strictly: the same logits and maps (eval mode) in float64. Measured at most 5.1e-15 relative
  (7.8e-15 at width 1/4). Float32 and train mode change only the trunk, tested above."""
  model = models.VGGAttention(width_multiplier=TINY, dtype=jnp.float64, **variant)
  random = ref.randomise(ref.ReferenceVGG(scheme, width_multiplier=TINY, **variant), seed=4)
  variables = torch_interop.from_torch(state_dict(random.double()), model)
  torch_model = ref.ReferenceVGG(scheme, width_multiplier=TINY, **variant).double()
  torch_model.load_state_dict({k: ref.torch.from_numpy(v) for k, v in torch_interop.to_torch(
      variables, model, scheme).items()}, strict=True)
  images = np.random.default_rng(4).normal(size=(4, 32, 32, 3))
  flat = lambda logits, maps: flax.traverse_util.flatten_dict({"logits": logits, "maps": maps},
                                                              sep="/")
  errors = relative_errors(
      flat(*jax.jit(functools.partial(model.apply, train=False))(variables, images)),
      flat(*torch_forward(ref, torch_model, images, train_mode=False)))
  assert len(errors) == 7 and max(errors.values()) <= F64_RTOL, errors


@pytest.mark.slow
def test_sgd_steps_match_torch_optim_sgd(ref, monkeypatch):
  """Two steps of steps.train_step (augmentation off) against torch.optim.SGD, float64 and 32.

  Step 1 tests the gradients, step 2 the momentum. Torch float32 gets the inputs rounded as
  train_step's float32 normalisation rounds them. The float64 runs normalise in float64, as
  train_step does for a float64 model: XLA computes a float32 normalisation in two fusions, for
  the forward and for the first conv's weight gradient, which can round 1 ulp apart (measured:
  block1/conv0/kernel 1.5e-8 relative off after one step, everything ~1e-8 after two).
  """
  torch = ref.torch
  monkeypatch.setattr(input_pipeline, "random_crop_flip", lambda rng, images: images)
  torch64 = ref.randomise(ref.ReferenceVGG(width_multiplier=TINY, **SEED_TABLE), seed=1).double()
  torch32, start = copy.deepcopy(torch64).float(), state_dict(torch64)
  info = datasets.DATASETS["cifar100"]
  rng = np.random.default_rng(1)
  batches = [(rng.integers(0, 256, (8, 32, 32, 3), np.uint8),
              rng.integers(0, 100, 8).astype(np.int32)) for _ in range(2)]
  lr, momentum, weight_decay = 0.1, 0.9, 5e-4
  runs = {}
  for name, dtype in (("jax64", jnp.float64), ("jax32", jnp.float32)):
    with jax.enable_x64(dtype == jnp.float64):
      model = models.VGGAttention(width_multiplier=TINY, dtype=dtype, **SEED_TABLE)
      variables = torch_interop.from_torch(start, model)
      tx = optim.sgd(lr, momentum, weight_decay)
      state = steps.TrainState(jnp.zeros((), jnp.int32), variables["params"],
                               variables["batch_stats"], tx.init(variables["params"]))
      step = jax.jit(functools.partial(steps.train_step, model, tx, info))
      runs[name] = []
      for images, labels in batches:
        state, metrics = step(state, images, labels, jax.random.key(0))
        runs[name].append({"loss": metrics.compute()["loss"]} | tensors(torch_interop.to_torch(
            {"params": state.params, "batch_stats": state.batch_stats}, model, "reference")))
  with jax.enable_x64(True):
    inputs = {"torch64": [np.asarray(input_pipeline.normalise(images, info.mean, info.std,
                                                              jnp.float64))
                          for images, _ in batches]}
  normalise = jax.jit(input_pipeline.normalise, static_argnums=(1, 2))  # rounds as train_step's
  inputs["torch32"] = [np.asarray(normalise(images, info.mean, info.std)) for images, _ in batches]
  for name, torch_model in (("torch64", torch64), ("torch32", torch32)):
    torch_sgd = torch.optim.SGD(torch_model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    torch_model.train()
    runs[name] = []
    for x, (_, labels) in zip(inputs[name], batches):
      torch_sgd.zero_grad()
      logits, _ = torch_model(torch_input(ref, torch_model, x))
      loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long())
      loss.backward()
      torch_sgd.step()
      runs[name].append({"loss": loss.item()} | tensors(state_dict(torch_model)))
  for i in range(2):
    assert_matches_torch({name: run[i] for name, run in runs.items()}, f"after step {i + 1}")


@pytest.mark.parametrize("scheme", torch_interop.SCHEMES)
@pytest.mark.parametrize("variant", [
    SEED_TABLE, SOFTMAX_SEPARATE_U,
    dict(aggregation="indep", attended_layers=(2, 3), compatibility="dp"),
    dict(attention=False), dict(attention=False, shared_u=True), GRID_AFTER_INDEP],
    ids=["seed_table", "softmax_separate_u", "indep_dp", "vgg19", "vgg19_shared_u", "grid"])
def test_round_trip_is_exact(scheme, variant):
  model = models.VGGAttention(width_multiplier=TINY, **variant)
  variables = random_variables(model)
  exported = torch_interop.to_torch(variables, model, scheme)
  assert torch_interop.detect_scheme(exported) == scheme
  back = torch_interop.from_torch(exported, model)
  assert jax.tree.structure(back) == jax.tree.structure(variables)
  jax.tree.map(np.testing.assert_array_equal, back, variables)


@pytest.mark.parametrize("scheme, variant, ignored", [
    ("reference", SEED_TABLE, None), ("saoyan", SOFTMAX_SEPARATE_U, None),
    ("reference", dict(attention=False), "op1.weight, op2.weight, op3.weight, projector.weight"),
    ("reference", dict(attention=False, shared_u=True), "op.weight, projector.weight"),
    ("saoyan", dict(attention=False), None),
    ("reference", GRID, None), ("saoyan", GRID_AFTER_INDEP, None),
], ids=["reference", "saoyan", "vgg19-reference", "vgg19_shared_u-reference", "vgg19-saoyan",
        "grid-reference", "grid_after_indep-saoyan"])
def test_export_loads_strictly_into_the_pytorch_model(ref, tmp_path, capsys, scheme, variant,
                                                      ignored):
  """Without attention, the reference module's unused tensors are exported, and ignored back."""
  model = models.VGGAttention(width_multiplier=TINY, **variant)
  variables = random_variables(model)
  path = tmp_path / "exported.pth"
  torch_interop.save_pth(torch_interop.to_torch(variables, model, scheme), path)
  torch_model = ref.ReferenceVGG(scheme, width_multiplier=TINY, **variant)
  torch_model.load_state_dict(ref.torch.load(path), strict=True)
  back = torch_interop.from_torch(state_dict(torch_model), model, scheme=scheme)
  jax.tree.map(np.testing.assert_array_equal, back, variables)
  printed = capsys.readouterr().out
  assert printed == (f"Ignored {ignored}: the reference module creates them without attention "
                     "but does not use them.\n" if ignored else "")


def test_load_pth_accepts_wrapped_and_dataparallel_state_dicts(ref, tmp_path):
  torch = ref.torch
  torch_model = ref.randomise(ref.ReferenceVGG("saoyan", width_multiplier=TINY), seed=2)
  model = models.VGGAttention(width_multiplier=TINY)
  expected = torch_interop.from_torch(state_dict(torch_model), model)
  raw = torch_model.state_dict()
  parallel = {f"module.{k}": v for k, v in raw.items()}
  for name, checkpoint in (("raw", raw), ("state_dict", {"state_dict": parallel, "epoch": 3}),
                           ("model", {"model": raw, "optimizer": {}})):
    torch.save(checkpoint, tmp_path / f"{name}.pth")
    loaded = torch_interop.load_pth(tmp_path / f"{name}.pth")
    jax.tree.map(np.testing.assert_array_equal, torch_interop.from_torch(loaded, model), expected)
  torch.save({"epoch": 3}, tmp_path / "bad.pth")
  with pytest.raises(ValueError, match="holds no state_dict"):
    torch_interop.load_pth(tmp_path / "bad.pth")


def test_mismatches_are_listed_by_name_and_shape():
  model = models.VGGAttention(width_multiplier=TINY, **SEED_TABLE)
  state_dict_ = torch_interop.to_torch(random_variables(model), model, "reference")
  state_dict_["conv_block2.9.weight"] = state_dict_.pop("conv_block2.6.weight")
  state_dict_["classifier.weight"] = np.zeros((10, 96), np.float32)
  with pytest.raises(torch_interop.StateDictMismatchError) as error:
    torch_interop.from_torch(state_dict_, model)
  message = str(error.value)
  assert "1 missing names: conv_block2.6.weight;" in message
  assert "1 unexpected names: conv_block2.9.weight;" in message
  assert "classifier.weight checkpoint (10, 96) vs model (100, 96)" in message
  # A separate-u checkpoint for a shared-u model.
  separate = models.VGGAttention(width_multiplier=TINY, **dict(SEED_TABLE, shared_u=False))
  with pytest.raises(torch_interop.StateDictMismatchError,
                     match=r"missing names: op\.weight; 3 unexpected names: op1\.weight, "
                           r"op2\.weight, op3\.weight"):
    torch_interop.from_torch(
        torch_interop.to_torch(random_variables(separate), separate, "reference"), model)
  # Without attention only the reference module's unused names are accepted, and shape-checked.
  vgg19 = models.VGGAttention(width_multiplier=TINY, attention=False)
  state_dict_ = torch_interop.to_torch(random_variables(vgg19), vgg19, "reference")
  state_dict_["op.weight"] = np.zeros((1, 16, 1, 1), np.float32)
  state_dict_["dense.weight"] = state_dict_.pop("adaptive_conv.weight")
  with pytest.raises(torch_interop.StateDictMismatchError) as error:
    torch_interop.from_torch(state_dict_, vgg19)
  message = str(error.value)
  assert "1 missing names: adaptive_conv.weight;" in message
  assert "1 unexpected names: dense.weight;" in message
  assert "op.weight checkpoint (1, 16, 1, 1) vs unused (1, 32, 1, 1)" in message
  saoyan = torch_interop.to_torch(random_variables(vgg19), vgg19, "saoyan")  # has no projector
  saoyan["projector.op.weight"] = np.zeros((32, 16, 1, 1), np.float32)
  with pytest.raises(torch_interop.StateDictMismatchError,
                     match=r"1 unexpected names: projector\.op\.weight\."):
    torch_interop.from_torch(saoyan, vgg19)


def test_scheme_detection_and_bad_schemes():
  assert torch_interop.detect_scheme({"module.conv_block1.op.0.weight": 0}) == "saoyan"
  assert torch_interop.detect_scheme({"conv_block1.0.weight": 0}) == "reference"
  with pytest.raises(ValueError, match="Cannot tell the naming scheme"):
    torch_interop.detect_scheme({"features.0.weight": 0})
  model = models.VGGAttention(width_multiplier=TINY)
  with pytest.raises(ValueError, match="scheme must be one of"):
    torch_interop.to_torch(random_variables(model), model, "timm")


def test_package_does_not_import_torch():
  code = ("import sys; import ltpa_jax.evaluate_torch, ltpa_jax.model.torch_interop; "
          "assert 'torch' not in sys.modules, 'torch imported'")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


@pytest.mark.parametrize("scheme, variant, note", [
    ("saoyan", {}, None),
    ("reference", dict(attention=False, shared_u=True), "Ignored op.weight, projector.weight: "),
], ids=["saoyan-dataparallel", "vgg19-reference-strict"])
def test_evaluate_torch_command_on_a_fake_dataset(ref, tmp_path, fake_fashion_mnist, capsys,
                                                  scheme, variant, note):
  """The command's printed errors equal steps.evaluate on the converted variables, and PyTorch's.

  A wrapped DataParallel state_dict; and the reference module's own VGG19 state_dict, with its
  unused `projector` and `op`, which are ignored with a note.
  """
  manual_dir, splits = fake_fashion_mnist
  torch_model = ref.randomise(ref.ReferenceVGG(
      scheme, num_classes=10, channels=1, width_multiplier=TINY, **variant), seed=3)
  checkpoint = tmp_path / "model.pth"
  if scheme == "saoyan":
    ref.torch.save({"state_dict": {f"module.{k}": v for k, v in torch_model.state_dict().items()},
                    "epoch": 1}, checkpoint)
  else:
    ref.torch.save(torch_model.state_dict(), checkpoint)
  evaluate_torch.main([f"--checkpoint={checkpoint}", f"--config={REPO / 'configs/tiny.py'}",
                       "--config.dataset=fashion_mnist", f"--config.data_dir={tmp_path / 'data'}",
                       f"--config.manual_dir={manual_dir}", "--config.eval_batch_size=4",
                       *(f"--config.model.{k}={v}" for k, v in variant.items())])
  printed = capsys.readouterr().out
  assert printed.startswith(f"Evaluating on {devices.describe('float32', 1)}.\n"), printed
  assert (note in printed) if note else ("Ignored" not in printed), printed
  match = re.search(r"\(10 examples\): top-1 error ([\d.]+)%, top-5 error ([\d.]+)%", printed)
  assert match, printed
  top1, top5 = float(match[1]), float(match[2])

  images, labels = splits["test"]
  data = steps.to_device(datasets.Examples(images, labels.astype(np.int32)))
  model = models.VGGAttention(num_classes=10, width_multiplier=TINY, **variant)
  variables = torch_interop.from_torch(state_dict(torch_model), model, channels=1)
  state = steps.TrainState(jnp.zeros((), jnp.int32), variables["params"],
                           variables["batch_stats"], None)
  info = datasets.DATASETS["fashion_mnist"]
  direct = steps.evaluate(model, info, 4, state, data).compute()
  assert (top1, top5) == (round(steps.error_percent(direct["accuracy"]), 2),
                          round(steps.error_percent(direct["top5_accuracy"]), 2))

  inputs = np.asarray(input_pipeline.normalise(data.images, info.mean, info.std))
  logits, _ = torch_forward(ref, torch_model, inputs, train_mode=False)
  top5_classes = np.argsort(-logits, axis=1)[:, :5]
  assert top1 == round(100 * np.mean(logits.argmax(1) != labels), 2)
  assert top5 == round(100 * np.mean(~(top5_classes == labels[:, None]).any(1)), 2)
