"""A PyTorch checkpoint of the reference models evaluated on a dataset's test split, in JAX.

The checkpoint is a state_dict in the reference or the SaoYan naming (see `torch_interop`), or a
dict holding one under 'state_dict' or 'model'. The config's `model` fields must describe the
checkpoint's model (e.g. vgg19_att.py: sigmoid, one shared u, b2 = 3 convs). A reference VGG19's
unused `projector` and u's are ignored, with a printed note.
"""

import jax
import jax.numpy as jnp
import ml_collections

from ltpa_jax.core import steps
from ltpa_jax.model import torch_interop
from ltpa_jax.training import experiment as experiment_lib


def evaluate_checkpoint(config: ml_collections.ConfigDict, checkpoint: str,
                        scheme: str | None = None) -> dict[str, float]:
  """Loss and top-1/top-5 error (%) of the checkpoint on `config.dataset`'s test split, and
  how reports name that data (`dataset_label`)."""
  experiment = experiment_lib.build(config, splits=("test",))
  model, info = experiment.model, experiment.dataset.info
  variables = torch_interop.from_torch(torch_interop.load_pth(checkpoint), model,
                                       info.image_shape[-1], scheme)
  test = steps.to_device(experiment.dataset.test)
  state = steps.TrainState(jnp.zeros((), jnp.int32), variables["params"],
                           variables["batch_stats"], None)
  metrics = jax.device_get(experiment.evaluation()(state, test).compute())
  return {"num_examples": int(test.labels.shape[0]), "loss": float(metrics["loss"]),
          "top1_error": steps.error_percent(metrics["accuracy"]),
          "top5_error": steps.error_percent(metrics["top5_accuracy"]),
          "dataset_label": experiment.dataset.label}
