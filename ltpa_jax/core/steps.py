"""The pure parts of training: the state, jitted-ready SGD steps, evaluation (clean or under the
fast gradient sign method) and predictions.

Nothing here reads files, prints or keeps time: `train` runs these steps over a workdir,
`benchmark`, `visualize` and `evaluate_torch` call them directly.
"""

import functools
from typing import Any

from clu import metrics
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ltpa_jax.data import types as data_types
from ltpa_jax.data import input_pipeline
from ltpa_jax.core import parallel


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("correct")


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Average.from_output("correct")
  top5_accuracy: metrics.Average.from_output("top5_correct")


def to_device(examples: data_types.Examples) -> data_types.Examples:
  """Examples as device arrays, images zero-padded to 32x32."""
  return data_types.Examples(input_pipeline.pad_to_32(jnp.asarray(examples.images)),
                           jnp.asarray(examples.labels))


def params_dtype(params):
  """The params' dtype: float32 (float32 and bfloat16 models) or float64 (a float64 model)."""
  return jnp.result_type(*(p.dtype for p in jax.tree.leaves(params)))


def empty_metrics(cls, params):
  """`cls.empty()` as the steps' metrics are typed: totals in the params' dtype (float64 for a
  float64 model), counts in the default int (int64 under x64). A scan carries it unchanged."""
  empty = cls.empty()
  return empty.replace(**{name: type(m)(jnp.zeros((), params_dtype(params)), jnp.zeros((), int))
                          for name, m in vars(empty).items() if isinstance(m, metrics.Average)})


def initial_state(model: nn.Module, tx: optax.GradientTransformation, rng,
                  image_shape) -> TrainState:
  variables = model.init(rng, jnp.zeros((1, 32, 32, image_shape[-1])), train=False)
  params = variables["params"]
  return TrainState(jnp.zeros((), jnp.int32), params, variables["batch_stats"], tx.init(params))


def _outputs(logits, labels, loss):
  top5 = jax.lax.top_k(logits, 5)[1]
  return dict(loss=loss, correct=(jnp.argmax(logits, -1) == labels),
              top5_correct=(top5 == labels[:, None]).any(-1))


def train_step(model, tx, info: data_types.DatasetInfo, state: TrainState, images, labels, rng):
  """One SGD step on a uint8 batch: augment, forward in train mode, update params and BN stats."""
  images = input_pipeline.normalise(input_pipeline.random_crop_flip(rng, images), info.mean,
                                    info.std, params_dtype(state.params))

  def loss_fn(params):
    (logits, _), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, images, train=True,
        mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits, updates["batch_stats"])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates), batch_stats,
                         opt_state)
  outputs = _outputs(logits, labels, loss)
  outputs["loss"] = jnp.full(labels.shape, loss)  # weight the step loss by its batch size
  return new_state, TrainMetrics.single_from_model_output(**outputs)


def shuffled_batches(rng, n: int, batch_size: int):
  """A random order of range(n) as full batches (num_full, batch_size) and the remainder."""
  order = jax.random.permutation(rng, n).astype(jnp.int32)  # int64 under x64
  num_full = n // batch_size
  return order[:num_full * batch_size].reshape(num_full, batch_size), order[num_full * batch_size:]


def train_steps(model, tx, info, state: TrainState, data: data_types.Examples, batches, rng,
                first: int):
  """SGD steps on the rows of `batches` (indices into `data`), compiled as one `lax.scan`.

  Step k uses the key `fold_in(rng, first + k)`, so splitting a pass into calls changes nothing.
  """
  step = functools.partial(train_step, model, tx, info)

  def body(carry, xs):
    state, totals = carry
    index, batch = xs
    state, batch_metrics = step(state, data.images[batch], data.labels[batch],
                                jax.random.fold_in(rng, index))
    return (state, totals.merge(batch_metrics)), batch_metrics.loss.compute()

  empty = empty_metrics(TrainMetrics, state.params)
  if batches.shape[0] == 1:  # no loop: XLA:CPU runs steps ~10x slower in loops (README)
    (state, totals), loss = body((state, empty), (first, batches[0]))
    return state, totals, loss[None]
  indices = first + jnp.arange(batches.shape[0])
  (state, totals), losses = jax.lax.scan(body, (state, empty), (indices, batches))
  return state, totals, losses


def evaluate(model, info, batch_size: int, state: TrainState, data: data_types.Examples,
             mesh=None, eps=None):
  """Loss and top-1/top-5 accuracy on every example of `data`, with running BN statistics.

  With a `mesh`, each batch is split over its devices. With `eps` (pixel units; a number or a
  traced scalar), on each batch's FGSM images (`fgsm`) instead of the images.
  """
  n = data.labels.shape[0]
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  images = jnp.pad(data.images, ((0, pad), (0, 0), (0, 0), (0, 0)))
  labels = jnp.pad(data.labels, (0, pad))
  mask = jnp.arange(num_batches * batch_size) < n
  reshape = lambda x: x.reshape(num_batches, batch_size, *x.shape[1:])

  def body(totals, xs):
    images, labels, mask = xs
    if eps is not None:
      images = fgsm(model, info, state, images, labels, eps)
    logits, _ = predictions(model, info, state, images)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return totals.merge(EvalMetrics.single_from_model_output(
        **_outputs(logits, labels, loss), mask=mask)), None

  totals, _ = jax.lax.scan(body, empty_metrics(EvalMetrics, state.params), parallel.shard_batches(
      (reshape(images), reshape(labels), reshape(mask)), mesh))
  return totals


def error_percent(accuracy) -> float:
  """The error (%) of an accuracy (a fraction, e.g. computed `EvalMetrics`' "accuracy")."""
  return 100 * (1 - float(accuracy))


def evaluate_adversarial(model, info, batch_size: int, eps, state: TrainState,
                         data: data_types.Examples):
  """`evaluate` on the FGSM images of `eps` (pixel units) of every example of `data`.

  A Python eps of 0 evaluates the clean images: the very program of `evaluate`, its numbers
  bitwise. A traced eps (one compilation for every eps) always attacks, 0 included.
  """
  clean = isinstance(eps, (int, float)) and eps == 0
  return evaluate(model, info, batch_size, state, data, eps=None if clean else eps)


def pixel_loss(model, info, state: TrainState, images, labels):
  """The summed softmax cross-entropy of images in pixel units (0-255, padded to 32x32), in eval
  mode: the loss FGSM ascends. Summed, each image's gradient is that of its own loss, whatever
  the batch (the mean's has the same sign)."""
  logits, _ = predictions(model, info, state, images)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()


def fgsm(model, info, state: TrainState, images, labels, eps):
  """The fast gradient sign method's images of `images` (uint8 or float, pixel units):
  clip(x + eps * sign(d pixel_loss / dx), 0, 255), as floats in the params' dtype, not rounded to
  integers: the attack is defined in real pixel units."""
  x = images.astype(params_dtype(state.params))
  grad = jax.grad(lambda x: pixel_loss(model, info, state, x, labels))(x)
  return jnp.clip(x + eps * jnp.sign(grad), 0, 255)


def predictions(model, info, state: TrainState, images):
  """The logits (N, classes) and normalised attention maps {layer: (N, h, w)} of images in pixel
  units (uint8, or floats from `fgsm`; padded to 32x32), in eval mode."""
  logits, maps = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                             input_pipeline.normalise(images, info.mean, info.std,
                                                      params_dtype(state.params)), train=False)
  return logits, {layer: m["a"] for layer, m in maps.items()}


def checkpoint_tree(state: TrainState, epoch_metrics=None) -> dict:
  """What a checkpoint holds: the state and the train metrics of the epoch so far (empty ones
  when not given), so that an epoch stopped midway resumes its sums exactly."""
  if epoch_metrics is None:
    epoch_metrics = empty_metrics(TrainMetrics, state.params)
  return {"state": state, "epoch_metrics": epoch_metrics}
