"""Every knob of ltpa_jax, with the reference recipe's values (VGG19-att, softmax, separate u).

    python train.py --config configs/default.py --workdir runs/default

The configs in configs/ start from this one and change a few fields (see configs/vgg19.py and
configs/vgg19_att.py); `config_validation` takes its fields and types from here. `sibling` lets a
config file derive from another one beside it, whatever the working directory. `find` takes a
config by path or by the name of a file of configs/ ("vgg19_att"), which the installed package
carries as `ltpa_jax.configs`.
"""

import importlib.util
import os

import ml_collections
from ml_collections.config_dict import placeholder


def get_config():
  config = ml_collections.ConfigDict()

  # Data: a TFDS dataset read through tfds.data_source (prepared without TensorFlow if needed).
  config.dataset = "cifar100"
  config.data_dir = placeholder(str)  # TFDS data_dir; None: TFDS's default
  config.manual_dir = placeholder(str)  # the official archives, for offline preparation
  config.train_examples = 0  # train on the first N training examples only (0: all); smoke tests

  # Model (ltpa_jax.model.models.VGGAttention).
  config.model = ml_collections.ConfigDict()
  config.model.attention = True  # False: plain VGG19, Linear(512 -> classes) on g.
  config.model.attention_type = "linear"  # linear: the paper's <u, l + g> or <l, g> |
  #                                         grid: Schlemper et al.'s gate phi(relu(W_l l + W_g g))
  config.model.attn_features = 256  # grid: the gate's hidden channels (x width_multiplier)
  config.model.normalisation = "softmax"  # softmax (sum of a*l) | sigmoid (mean of a*l)
  config.model.compatibility = "pc"  # pc: <u, l + g> | dp: <l, g>
  config.model.attended_layers = (1, 2, 3)  # which of l1 (b3), l2 (b4), l3 (b5)
  config.model.aggregation = "concat"  # concat: one classifier | indep: one per layer, averaged
  config.model.shared_u = False  # one compatibility vector u for all attended layers
  config.model.attention_position = "before"  # before | after the max-pools
  config.model.b2_convs = 2  # convs in block b2 (the reference table's runs used 3)
  config.model.batchnorm_one_pass = False  # BatchNorm variance as E[x^2] - E[x]^2 in one pass
  config.model.width_multiplier = 1.0  # scales every channel width (tiny models for tests)
  config.model.init_scheme = "kaiming"  # kaiming: normal fan_in, BN scale ~ N(0, 0.01) |
  #                                        xavier: uniform gain sqrt(2), BN scale ~ U(0, 1)
  config.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (params, BN stats float32) |
  #                                 float64 (tests of exact maths; needs JAX_ENABLE_X64=1)

  # Optimisation: SGD with momentum, weight decay added to the gradient (torch.optim.SGD).
  config.batch_size = 64
  config.num_epochs = 100
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 5e-5
  config.lr_schedule = "piecewise"  # piecewise: x lr_decay at lr_boundaries_epochs |
  #                                    step: x lr_decay every lr_step_epochs
  config.lr_boundaries_epochs = (50, 70, 90)
  config.lr_step_epochs = 25
  config.lr_decay = 0.1
  config.passes_per_epoch = 1  # the SaoYan port counts 3 passes over the data as one "epoch"
  # SGD steps per compiled call (a stop or progress line waits for the call to end); 0 = auto:
  # one step on CPU (XLA:CPU runs steps ~10x slower inside a loop), a whole pass in one lax.scan
  # elsewhere.
  config.steps_per_call = 0

  # Evaluation and logging.
  config.eval_batch_size = 1000
  config.eval_every_epochs = 1
  config.attention_every_epochs = 10  # attention overlays to TensorBoard every N epochs
  config.attention_images = 8  # fixed train and test images whose attention maps are shown
  config.keep_checkpoints = 3  # checkpoints of the last k epochs are kept
  config.seed = 0
  return config


def configs_dir() -> str:
  """The folder of the configs: the installed package's ltpa_jax/configs, else the checkout's
  configs/ (beside ltpa_jax/)."""
  spec = importlib.util.find_spec("ltpa_jax.configs")
  if spec is not None:
    return list(spec.submodule_search_locations)[0]
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(os.path.dirname(package), "configs")


def names() -> list[str]:
  """The names of the configs in `configs_dir()`."""
  return sorted(os.path.splitext(f)[0] for f in os.listdir(configs_dir())
                if f.endswith(".py") and f != "__init__.py")


def find(path_or_name: str) -> str:
  """The config file `path_or_name` stands for: a file, else the config of configs/ so named
  ("vgg19_att"); FileNotFoundError naming both if neither exists."""
  if os.path.isfile(path_or_name):
    return path_or_name
  shipped = os.path.join(configs_dir(), f"{path_or_name}.py")
  if os.sep not in path_or_name and os.path.isfile(shipped):
    return shipped
  raise FileNotFoundError(f"no config file {path_or_name} (in {os.getcwd()}), nor a config of "
                          f"that name. Give a path or one of: {', '.join(names())}.")


def from_file(path: str) -> ml_collections.ConfigDict:
  """get_config() of the config file at `path`, or of the config so named (see `find`)."""
  path = find(path)
  spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def sibling(config_file: str, name: str) -> ml_collections.ConfigDict:
  """get_config() of the config file `name`.py in the folder of `config_file` (a `__file__`)."""
  return from_file(os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py"))
