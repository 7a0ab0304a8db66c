"""torch_interop and evaluate_torch: naming schemes, exact round trips, parity with PyTorch."""

import functools
import pathlib
import re
import subprocess
import sys

from absl import flags
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltpa_jax import datasets
from ltpa_jax import evaluate_torch
from ltpa_jax import input_pipeline
from ltpa_jax import models
from ltpa_jax import optim
from ltpa_jax import torch_interop
from ltpa_jax import train

REPO = pathlib.Path(__file__).resolve().parents[1]
RTOL = 1e-5  # float32 parity: |ours - torch| <= RTOL * max|torch|, per tensor
# The reference table's runs, and the later code's softmax variant (kwargs of both models).
SEED_TABLE = dict(normalisation="sigmoid", shared_u=True, b2_convs=3)
SOFTMAX_SEPARATE_U = dict(normalisation="softmax", shared_u=False, b2_convs=2)
TINY = 1 / 16


@pytest.fixture(scope="module")
def ref():
  """tests/torch_reference.py, the reference models in PyTorch."""
  pytest.importorskip("torch", reason="PyTorch is absent: pip install torch==2.13.0 (CPU build) "
                      "to run the PyTorch parity tests")
  from tests import torch_reference  # pylint: disable=import-outside-toplevel
  return torch_reference


def assert_close(actual, expected, rtol=RTOL, name=""):
  expected = np.asarray(expected)
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=0,
                             atol=rtol * np.abs(expected).max(), err_msg=name)


def assert_variables_close(actual, expected, rtol=RTOL):
  actual, expected = (flax.traverse_util.flatten_dict(v, sep="/") for v in (actual, expected))
  assert actual.keys() == expected.keys()
  for key in expected:
    assert_close(actual[key], expected[key], rtol, key)


def state_dict(torch_model) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy().copy() for k, v in torch_model.state_dict().items()}


def torch_forward(ref, torch_model, images_nhwc, train_mode):
  torch_model.train(train_mode)
  with ref.torch.no_grad():
    logits, maps = torch_model(ref.torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy()))
  return logits.numpy(), [(c.numpy(), a.numpy()) for c, a in maps]


def random_variables(model, channels=3, seed=0):
  """Variables of `model` with every leaf random (BN statistics included)."""
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          jnp.zeros((1, 32, 32, channels)))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(rng.uniform(0.5, 1.5, x.shape), x.dtype), shapes)


@pytest.mark.parametrize("scheme, variant, width, train_rtol", [
    # Full width in train mode: JAX float32 is measured ~1.5e-5 from torch float64 there (torch
    # float32 ~7e-6), from 4608-term sums through 18 BatchNorms on batch statistics.
    ("reference", SEED_TABLE, 1.0, 3e-5),
    ("saoyan", SOFTMAX_SEPARATE_U, 1 / 8, RTOL),
    ("saoyan", dict(attention=False, b2_convs=3), TINY, RTOL),
], ids=["seed_table-reference-full_width", "softmax_separate_u-saoyan", "vgg19-saoyan"])
def test_forward_matches_pytorch(ref, scheme, variant, width, train_rtol):
  torch_model = ref.randomise(ref.ReferenceVGG(scheme, width_multiplier=width, **variant), seed=0)
  model = models.VGGAttention(width_multiplier=width, **variant)
  variables = torch_interop.from_torch(state_dict(torch_model), model)
  images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
  for train_mode, rtol in ((False, RTOL), (True, train_rtol)):  # eval first: it keeps the stats
    (logits, maps), updates = jax.jit(functools.partial(
        model.apply, train=train_mode, mutable=["batch_stats"]))(variables, images)
    torch_logits, torch_maps = torch_forward(ref, torch_model, images, train_mode)
    assert_close(logits, torch_logits, rtol, f"logits, train={train_mode}")
    assert len(maps) == len(torch_maps)
    for s, (c, a) in zip((1, 2, 3), torch_maps):
      assert_close(maps[f"l{s}"]["c"], c, rtol, f"c{s}, train={train_mode}")
      assert_close(maps[f"l{s}"]["a"], a, rtol, f"a{s}, train={train_mode}")
  # Running statistics after the train-mode forward (torch: unbiased batch variance).
  assert_variables_close(updates["batch_stats"],
                         torch_interop.from_torch(state_dict(torch_model), model)["batch_stats"],
                         train_rtol)


def test_sgd_steps_match_torch_optim_sgd(ref, monkeypatch):
  """Two steps of train.train_step (augmentation off) against torch.optim.SGD."""
  torch = ref.torch
  monkeypatch.setattr(input_pipeline, "random_crop_flip", lambda rng, images: images)
  torch_model = ref.randomise(ref.ReferenceVGG(width_multiplier=TINY, **SEED_TABLE), seed=1)
  model = models.VGGAttention(width_multiplier=TINY, **SEED_TABLE)
  variables = torch_interop.from_torch(state_dict(torch_model), model)
  lr, momentum, weight_decay = 0.1, 0.9, 5e-4
  tx = optim.sgd(lr, momentum, weight_decay)
  state = train.TrainState(jnp.zeros((), jnp.int32), variables["params"],
                           variables["batch_stats"], tx.init(variables["params"]))
  torch_sgd = torch.optim.SGD(torch_model.parameters(), lr=lr, momentum=momentum,
                              weight_decay=weight_decay)
  info = datasets.DATASETS["cifar100"]
  step = jax.jit(functools.partial(train.train_step, model, tx, info))
  rng = np.random.default_rng(1)
  torch_model.train()
  # After step 1, 1e-5. Step 2 tests the momentum: torch's own float32 is then ~4e-5 from a
  # float64 run (JAX's ~1.6e-5, measured), while a wrong momentum would be off by ~the update.
  for rtol in (RTOL, 1e-4):
    images = rng.integers(0, 256, (8, 32, 32, 3), np.uint8)
    labels = rng.integers(0, 100, 8).astype(np.int32)
    state, metrics = step(state, images, labels, jax.random.key(0))
    inputs = np.asarray(input_pipeline.normalise(images, info.mean, info.std))
    torch_sgd.zero_grad()
    logits, _ = torch_model(torch.from_numpy(inputs.transpose(0, 3, 1, 2).copy()))
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long())
    loss.backward()
    torch_sgd.step()
    assert_close(metrics.compute()["loss"], loss.item(), name="loss")
    assert_variables_close({"params": state.params, "batch_stats": state.batch_stats},
                           torch_interop.from_torch(state_dict(torch_model), model), rtol)


@pytest.mark.parametrize("scheme", torch_interop.SCHEMES)
@pytest.mark.parametrize("variant", [
    SEED_TABLE, SOFTMAX_SEPARATE_U,
    dict(aggregation="indep", attended_layers=(2, 3), compatibility="dp"),
    dict(attention=False)], ids=["seed_table", "softmax_separate_u", "indep_dp", "vgg19"])
def test_round_trip_is_exact(scheme, variant):
  model = models.VGGAttention(width_multiplier=TINY, **variant)
  variables = random_variables(model)
  exported = torch_interop.to_torch(variables, scheme)
  assert torch_interop.detect_scheme(exported) == scheme
  back = torch_interop.from_torch(exported, model)
  assert jax.tree.structure(back) == jax.tree.structure(variables)
  jax.tree.map(np.testing.assert_array_equal, back, variables)


@pytest.mark.parametrize("scheme, variant", [
    ("reference", SEED_TABLE), ("saoyan", SOFTMAX_SEPARATE_U)], ids=["reference", "saoyan"])
def test_export_loads_strictly_into_the_pytorch_model(ref, tmp_path, scheme, variant):
  model = models.VGGAttention(width_multiplier=TINY, **variant)
  variables = random_variables(model)
  path = tmp_path / "exported.pth"
  torch_interop.save_pth(torch_interop.to_torch(variables, scheme), path)
  torch_model = ref.ReferenceVGG(scheme, width_multiplier=TINY, **variant)
  torch_model.load_state_dict(ref.torch.load(path), strict=True)
  back = torch_interop.from_torch(state_dict(torch_model), model, scheme=scheme)
  jax.tree.map(np.testing.assert_array_equal, back, variables)


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
  state_dict_ = torch_interop.to_torch(random_variables(model), "reference")
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
    torch_interop.from_torch(torch_interop.to_torch(random_variables(separate), "reference"),
                             model)


def test_scheme_detection_and_bad_schemes():
  assert torch_interop.detect_scheme({"module.conv_block1.op.0.weight": 0}) == "saoyan"
  assert torch_interop.detect_scheme({"conv_block1.0.weight": 0}) == "reference"
  with pytest.raises(ValueError, match="Cannot tell the naming scheme"):
    torch_interop.detect_scheme({"features.0.weight": 0})
  with pytest.raises(ValueError, match="scheme must be one of"):
    torch_interop.to_torch(random_variables(models.VGGAttention(width_multiplier=TINY)), "timm")


def test_package_does_not_import_torch():
  code = ("import sys; import ltpa_jax.evaluate_torch, ltpa_jax.torch_interop; "
          "assert 'torch' not in sys.modules, 'torch imported'")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_evaluate_torch_command_on_a_fake_dataset(ref, tmp_path, fake_fashion_mnist, capsys,
                                                  monkeypatch):
  """The command's printed errors equal train.evaluate on the converted variables, and PyTorch's."""
  manual_dir, splits = fake_fashion_mnist
  torch_model = ref.randomise(
      ref.ReferenceVGG("saoyan", num_classes=10, channels=1, width_multiplier=TINY), seed=3)
  checkpoint = tmp_path / "model.pth"
  ref.torch.save({"state_dict": {f"module.{k}": v for k, v in torch_model.state_dict().items()},
                  "epoch": 1}, checkpoint)
  argv = ["evaluate_torch", f"--checkpoint={checkpoint}", f"--config={REPO / 'configs/tiny.py'}",
          "--config.dataset=fashion_mnist", f"--config.data_dir={tmp_path / 'data'}",
          f"--config.manual_dir={manual_dir}", "--config.eval_batch_size=4"]
  monkeypatch.setattr(sys, "argv", argv)  # config_flags reads the --config.* overrides there
  flags.FLAGS(argv)
  try:
    evaluate_torch.main(argv[:1])
  finally:
    flags.FLAGS.unparse_flags()
  printed = capsys.readouterr().out
  match = re.search(r"\(10 examples\): top-1 error ([\d.]+)%, top-5 error ([\d.]+)%", printed)
  assert match, printed
  top1, top5 = float(match[1]), float(match[2])

  images, labels = splits["test"]
  data = train.to_device(datasets.Split(images, labels.astype(np.int32)))
  model = models.VGGAttention(num_classes=10, width_multiplier=TINY)
  variables = torch_interop.from_torch(state_dict(torch_model), model, channels=1)
  state = train.TrainState(jnp.zeros((), jnp.int32), variables["params"],
                           variables["batch_stats"], None)
  info = datasets.DATASETS["fashion_mnist"]
  direct = train.evaluate(model, info, 4, state, data).compute()
  assert (top1, top5) == (round(100 * (1 - float(direct["accuracy"])), 2),
                          round(100 * (1 - float(direct["top5_accuracy"])), 2))

  inputs = np.asarray(input_pipeline.normalise(data.images, info.mean, info.std))
  logits, _ = torch_forward(ref, torch_model, inputs, train_mode=False)
  top5_classes = np.argsort(-logits, axis=1)[:, :5]
  assert top1 == round(100 * np.mean(logits.argmax(1) != labels), 2)
  assert top5 == round(100 * np.mean(~(top5_classes == labels[:, None]).any(1)), 2)
