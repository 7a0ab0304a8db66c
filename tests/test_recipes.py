"""The recipes in configs/: their sources' hyperparameters, schedules and model structure.

That every config passes `config_validation.validate` is tested in test_config_validation.py.
"""

import importlib
import pathlib

import jax
import jax.numpy as jnp
import pytest

from ltpa_jax.data import datasets
from ltpa_jax.model import models
from ltpa_jax.core import optim

NAMES = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
               if p.stem != "__init__")
REFERENCE_TABLE = ("vgg19", "vgg19_att", "cifar10_vgg19", "cifar10_att", "fashion_mnist_vgg19",
                   "fashion_mnist_att")
LATER = ("vgg19_later", "vgg19_att_softmax", "vgg19_att_sigmoid", "vgg19_att_sigmoid_shared")
SAOYAN = ("saoyan_att_before", "saoyan_att_after")
CIFAR100_TRAIN = 50_000
BEFORE = {"l1": (32, 32), "l2": (16, 16), "l3": (8, 8)}
AFTER = {"l1": (16, 16), "l2": (8, 8), "l3": (4, 4)}

# Per config: parameters, attention map sizes, compatibility vectors u (None: none).
# CIFAR-100 counts match test_models.py's PyTorch-layout counts; 10-class and 1-channel variants
# have smaller classifiers and first convs.
STRUCTURE = {
    "default": (19_993_764, BEFORE, "separate"),
    "tiny": (88_344, BEFORE, "separate"),
    "vgg19": (19_906_596, {}, None),
    "vgg19_att": (20_140_580, BEFORE, "shared"),
    "vgg19_att_grid": (20_927_271, BEFORE, None),  # grid gates in place of the u
    "vgg19_later": (19_906_596, {}, None),
    "vgg19_att_softmax": (20_141_604, BEFORE, "separate"),
    "vgg19_att_sigmoid": (20_141_604, BEFORE, "separate"),
    "vgg19_att_sigmoid_shared": (20_140_580, BEFORE, "shared"),
    "saoyan_att_before": (19_993_764, BEFORE, "separate"),
    "saoyan_att_after": (19_993_764, AFTER, "separate"),
    "paper_att3_concat_pc": (19_993_764, BEFORE, "separate"),
    "cifar10_vgg19": (19_860_426, {}, None),
    "cifar10_att": (20_002_250, BEFORE, "shared"),
    "fashion_mnist_vgg19": (19_859_274, {}, None),
    "fashion_mnist_att": (20_001_098, BEFORE, "shared"),
}


def get_config(name):
  return importlib.import_module(f"configs.{name}").get_config()


def optimiser(config):
  return (config.batch_size, config.learning_rate, config.momentum, config.weight_decay,
          config.lr_schedule, config.num_epochs, config.passes_per_epoch)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_states_the_command(name):
  doc = importlib.import_module(f"configs.{name}").__doc__
  assert f"python train.py --config configs/{name}.py" in doc


def test_every_config_has_its_structure_listed():
  assert sorted(STRUCTURE) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_model_structure(name):
  config = get_config(name)
  info = datasets.dataset_info(config.dataset)
  model = models.create_model(config.model, info.num_classes)
  x = jnp.zeros((1, 32, 32, info.image_shape[-1]))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  params = variables["params"]
  (logits, maps) = jax.eval_shape(lambda v: model.apply(v, x), variables)
  num_params, map_sizes, u = STRUCTURE[name]
  assert sum(p.size for p in jax.tree.leaves(params)) == num_params
  assert logits.shape == (1, info.num_classes)
  assert {layer: m["a"].shape[1:] for layer, m in maps.items()} == map_sizes
  own_u = [s for s in (1, 2, 3) if "u" in params.get(f"attention{s}", {})]
  assert ("shared" if "u" in params else "separate" if own_u else None) == u
  assert own_u in ([], [1, 2, 3])
  assert params["block1"]["conv0"]["kernel"].shape[2] == info.image_shape[-1]


@pytest.mark.parametrize("name", REFERENCE_TABLE)
def test_reference_table_recipe(name):
  config = get_config(name)
  assert config.model.b2_convs == 3
  assert optimiser(config) == (64, 0.1, 0.9, 1e-4, "piecewise", 100, 1)
  assert tuple(config.lr_boundaries_epochs) == (50, 70, 90) and config.lr_decay == 0.1
  assert config.model.init_scheme == "kaiming"
  if config.model.attention:
    assert (config.model.normalisation, config.model.shared_u) == ("sigmoid", True)


@pytest.mark.parametrize("name", LATER)
def test_later_recipe(name):
  """The code at 845f1d4 (399c726's main.py): b2 = 3 convs, batch 128, weight decay 5e-5."""
  config = get_config(name)
  assert config.dataset == "cifar100" and config.model.b2_convs == 3
  assert optimiser(config) == (128, 0.1, 0.9, 5e-5, "piecewise", 100, 1)
  assert tuple(config.lr_boundaries_epochs) == (50, 70, 90) and config.lr_decay == 0.1
  assert config.model.attention == (name != "vgg19_later")
  if config.model.attention:
    assert config.model.normalisation == ("softmax" if "softmax" in name else "sigmoid")
    assert config.model.shared_u == name.endswith("_shared")


@pytest.mark.parametrize("dataset", ["cifar10", "fashion_mnist"])
@pytest.mark.parametrize("model", ["vgg19", "att"])
def test_other_datasets_change_only_the_dataset(dataset, model):
  config = get_config(f"{dataset}_{model}").to_dict()
  base = get_config("vgg19" if model == "vgg19" else "vgg19_att").to_dict()
  assert config.pop("dataset") == dataset and base.pop("dataset") == "cifar100"
  assert config == base


def test_grid_config_changes_only_the_attention_of_vgg19_att():
  config, base = get_config("vgg19_att_grid").to_dict(), get_config("vgg19_att").to_dict()
  assert (config["model"].pop("attention_type"), base["model"].pop("attention_type")) == (
      "grid", "linear")
  assert (config["model"].pop("shared_u"), base["model"].pop("shared_u")) == (False, True)
  assert config == base and config["model"]["attn_features"] == 256


def test_saoyan_recipe():
  before, after = get_config("saoyan_att_before"), get_config("saoyan_att_after")
  assert optimiser(before) == (128, 0.1, 0.9, 5e-4, "step", 300, 3)
  assert (before.lr_step_epochs, before.lr_decay, before.model.init_scheme) == (25, 0.5, "xavier")
  assert (before.model.normalisation, before.model.aggregation) == ("softmax", "concat")
  assert before.model.attention_position == "before"
  after_dict = after.to_dict()
  after_dict["model"]["attention_position"] = "before"
  assert after_dict == before.to_dict()


def test_saoyan_schedule_halves_every_25_epochs_of_3_passes():
  config = get_config("saoyan_att_before")
  steps_per_pass = -(-CIFAR100_TRAIN // config.batch_size)
  assert steps_per_pass == 391
  schedule = optim.learning_rate_schedule(config, steps_per_pass)
  epoch = 3 * steps_per_pass
  # The schedule returns float32: rel 1e-6 is 8 float32 ulps, room for its own rounding of the
  # products and no more (a wrong boundary is off by a factor of 2).
  for step, lr in [(0, 0.1), (25 * epoch - 1, 0.1), (25 * epoch, 0.05), (50 * epoch, 0.025),
                   (300 * epoch - 1, 0.1 * 0.5**11)]:
    assert float(schedule(step)) == pytest.approx(lr, rel=1e-6), step


def test_paper_config_scales_the_reference_schedule_to_300_epochs():
  config = get_config("paper_att3_concat_pc")
  m = config.model
  assert (m.attention, m.normalisation, m.compatibility, m.aggregation, m.shared_u) == (
      True, "softmax", "pc", "concat", False)
  assert tuple(m.attended_layers) == (1, 2, 3)
  assert optimiser(config) == (64, 0.1, 0.9, 5e-5, "piecewise", 300, 1)
  steps_per_pass = -(-CIFAR100_TRAIN // config.batch_size)  # one pass an epoch
  schedule = optim.learning_rate_schedule(config, steps_per_pass)  # float32: 8 ulps allowed
  for epoch, lr in [(149, 0.1), (150, 0.01), (210, 1e-3), (270, 1e-4), (299, 1e-4)]:
    assert float(schedule(epoch * steps_per_pass)) == pytest.approx(lr, rel=1e-6), epoch


def test_normalisation_constants_are_each_sources_own():
  """iversonicter's main.py (the reference table's code) and SaoYan's train.py, to the digit."""
  iversonicter = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
  saoyan = ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
  cifar100 = datasets.dataset_info("cifar100")
  assert (cifar100.mean, cifar100.std) == iversonicter
  for name in NAMES:
    config = get_config(name)
    if name.startswith("saoyan_"):
      assert (config.data_mean, config.data_std) == saoyan
    else:
      assert (config.data_mean, config.data_std) == (None, None)  # the dataset's own
  info = datasets.with_statistics(datasets.Dataset("cifar100", cifar100, "", None, None),
                                  *saoyan).info
  assert (info.mean, info.std, info.num_classes) == (*saoyan, 100)


def test_the_reference_configs_decay_at_epochs_50_70_90_as_pytorch_1_0_ran_them():
  for name in (*REFERENCE_TABLE, *LATER):
    assert get_config(name).lr_scheduler_steps_first is False


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_config_trains_an_epoch_at_tiny_width(name, fake_dataset, tmp_path):
  """Each config as it is, less its size: width 1/32, an epoch (of its passes) over 96 fake
  images, no decay; its own model, optimiser, schedule type and statistics."""
  from ltpa_jax.training import loop  # pylint: disable=import-outside-toplevel
  config = get_config(name)
  config.update(dataset="fake", num_epochs=1, lr_boundaries_epochs=(), batch_size=32,
                eval_batch_size=50, attention_images=2)
  config.model.width_multiplier = 1 / 32
  run = loop.train_and_evaluate(config, str(tmp_path / name))
  assert run["final"]["epoch"] == 1 and 0 <= run["final"]["test_top1_error"] <= 100
  assert run["config"]["model"] == {**config.model.to_dict(),
                                    "attended_layers": list(config.model.attended_layers)}
