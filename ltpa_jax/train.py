"""Training and evaluation: pure jitted steps, one compiled scan per pass over the data."""

import functools
import json
import os
import time
from typing import Any

from absl import logging
from clu import metrics
from clu import parameter_overview
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ltpa_jax import checkpoints
from ltpa_jax import config_validation
from ltpa_jax import datasets
from ltpa_jax import input_pipeline
from ltpa_jax import models
from ltpa_jax import optim
from ltpa_jax import parallel
from ltpa_jax import plots
from ltpa_jax import results
from ltpa_jax import stopping
from ltpa_jax import summaries
from ltpa_jax import workdir as workdir_lib

HISTORY_FILE = "history.json"


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


@flax.struct.dataclass
class DeviceData:
  """A split on the accelerator: uint8 images (N, 32, 32, C) and int32 labels (N,)."""
  images: jax.Array
  labels: jax.Array


def to_device(split: datasets.Split) -> DeviceData:
  images = input_pipeline.pad_to_32(jnp.asarray(split.images))
  return DeviceData(images, jnp.asarray(split.labels))


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


def train_step(model, tx, info: datasets.DatasetInfo, state: TrainState, images, labels, rng):
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


def train_steps(model, tx, info, state: TrainState, data: DeviceData, batches, rng, first: int):
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


def evaluate(model, info, batch_size: int, state: TrainState, data: DeviceData, mesh=None):
  """Loss and top-1/top-5 accuracy on every example of `data`, with running BN statistics.

  With a `mesh`, each batch is split over its devices.
  """
  n = data.labels.shape[0]
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  images = jnp.pad(data.images, ((0, pad), (0, 0), (0, 0), (0, 0)))
  labels = jnp.pad(data.labels, (0, pad))
  mask = jnp.arange(num_batches * batch_size) < n
  reshape = lambda x: x.reshape(num_batches, batch_size, *x.shape[1:])
  variables = {"params": state.params, "batch_stats": state.batch_stats}

  def body(totals, xs):
    images, labels, mask = xs
    logits, _ = model.apply(variables, input_pipeline.normalise(
        images, info.mean, info.std, params_dtype(state.params)), train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return totals.merge(EvalMetrics.single_from_model_output(
        **_outputs(logits, labels, loss), mask=mask)), None

  totals, _ = jax.lax.scan(body, empty_metrics(EvalMetrics, state.params), parallel.shard_batches(
      (reshape(images), reshape(labels), reshape(mask)), mesh))
  return totals


def chunk_shapes(num_examples: int, batch_size: int, steps_per_call: int) -> list[tuple[int, int]]:
  """Shapes (steps, batch) of the `batches` arguments one pass feeds to `train_steps`."""
  num_full, remainder = divmod(num_examples, batch_size)
  chunk = min(steps_per_call or num_full, num_full)
  shapes = [(chunk, batch_size)] if chunk else []
  if chunk and num_full % chunk:
    shapes.append((num_full % chunk, batch_size))
  if remainder:  # the last, smaller batch, as torch's DataLoader (drop_last=False) runs it
    shapes.append((1, remainder))
  return shapes


class CompiledSteps(dict):
  """`train_steps` (state donated) AOT-compiled per shape of `batches`, on first use.

  With a `mesh` (state, data and rng replicated on it), each batch is split over its devices.
  """

  def __init__(self, model, tx, info, state, data, rng, mesh=None):
    super().__init__()
    self._jitted = jax.jit(parallel.data_parallel(
        functools.partial(train_steps, model, tx, info), mesh), donate_argnums=0)
    self._abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding if mesh else None),
        (state, data, rng))
    self._batches_sharding = parallel.replicated(mesh) if mesh else None

  def __missing__(self, shape):
    state, data, rng = self._abstract
    batches = jax.ShapeDtypeStruct(shape, jnp.int32, sharding=self._batches_sharding)
    self[shape] = self._jitted.lower(state, data, batches, rng, np.int32(0)).compile()
    return self[shape]


def compile_train_steps(model, tx, info, state, data, rng, shapes, mesh=None) -> CompiledSteps:
  """`CompiledSteps` with `shapes` compiled now."""
  compiled = CompiledSteps(model, tx, info, state, data, rng, mesh)
  for shape in shapes:
    compiled[shape]  # pylint: disable=pointless-statement
  return compiled


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or Inf at step `step_in_pass` of a pass."""

  def __init__(self, message: str, step_in_pass: int):
    super().__init__(message)
    self.step_in_pass = step_in_pass


def train_pass(compiled, batch_size: int, steps_per_call: int, state: TrainState, totals,
               data: DeviceData, rng, start: int = 0, after_call=lambda steps: False):
  """A shuffled pass over `data` from its step `start`, in calls of `steps_per_call` steps.

  Each step's metrics are merged into `totals` in step order, so how a pass is split into calls
  does not change their sums. After each call (waited for), `after_call(steps run)` may end the
  pass early by returning True. Returns (state, totals, steps run). Raises NonFiniteLossError
  (state not returned) if a loss is not finite.
  """
  perm_rng, step_rng = jax.random.split(rng)
  # On the host: slicing a device array at new static offsets would compile each slice.
  full, rest = jax.device_get(shuffled_batches(perm_rng, data.labels.shape[0], batch_size))
  chunk = steps_per_call or max(full.shape[0], 1)
  calls = [full[i:i + chunk] for i in range(start, full.shape[0], chunk)]
  if rest.shape[0]:
    calls.append(rest[None])
  losses, first = [], start
  for batches in calls:
    state, chunk_metrics, chunk_losses = compiled[batches.shape](state, data, batches, step_rng,
                                                                 np.int32(first))
    totals = totals.merge(chunk_metrics)
    losses.append(stopping.wait(chunk_losses))
    first += batches.shape[0]
    if after_call(first - start):
      break
  finite = np.isfinite(np.concatenate(jax.device_get(losses)))
  if not finite.all():
    step = start + int(np.argmin(finite))
    raise NonFiniteLossError(f"The training loss is not finite at step {step} of the pass.", step)
  return state, totals, first - start


def pass_images(num_examples: int, batch_size: int, start: int, steps: int) -> int:
  """How many images steps start .. start + steps - 1 of a pass train (the last batch may be
  smaller)."""
  return min((start + steps) * batch_size, num_examples) - start * batch_size


def resolved_steps_per_call(config) -> int:
  """`config.steps_per_call`, or for 0 (auto): one step per call on CPU, where XLA runs
  steps ~10x slower inside loops and a call must stay short enough to stop promptly,
  and a whole pass per call (0) on accelerators (a CIFAR pass takes a few seconds there)."""
  if config.steps_per_call or jax.default_backend() != "cpu":
    return config.steps_per_call
  return 1


class EpochProgress:
  """An epoch's images trained by this process (`trained`) and, while the epoch runs longer than
  `every` seconds, a progress line every `every` seconds."""

  def __init__(self, label: str, epoch_images: int, every: float = 30.0):
    self.label, self.epoch_images, self.every = label, epoch_images, every
    self.start = self.last_line = time.perf_counter()
    self.trained = 0

  def seconds(self) -> float:
    return time.perf_counter() - self.start

  def update(self, done_before: int, pass_trained: int) -> None:
    """After a call: `done_before` images of the epoch were done before this pass's calls (a
    resumed epoch's too), which have trained `pass_trained` since."""
    now = time.perf_counter()
    done, trained = done_before + pass_trained, self.trained + pass_trained
    if now - self.last_line < self.every or done >= self.epoch_images:
      return
    self.last_line = now
    rate = trained / (now - self.start)
    report(f"  {self.label}: {done}/{self.epoch_images} images ({100 * done // self.epoch_images}%)"
           f", {rate:.4g} images/s, epoch eta {(self.epoch_images - done) / rate:.0f}s")


def is_primary() -> bool:
  """Whether this process writes the run's files and progress (process 0 of several)."""
  return jax.process_index() == 0


def report(message: str):
  """One line of progress on stdout, from the primary process (library logs go through absl
  logging)."""
  if is_primary():
    print(message, flush=True)


def fixed_examples(split: datasets.Split, count: int):
  """The first `count` images (padded to 32x32) and labels of a split: the attention probes."""
  return np.asarray(input_pipeline.pad_to_32(split.images[:count])), split.labels[:count]


def predictions(model, info, state: TrainState, images):
  """The logits (N, classes) and normalised attention maps {layer: (N, h, w)} of uint8 images
  (padded to 32x32), in eval mode."""
  logits, maps = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                             input_pipeline.normalise(images, info.mean, info.std,
                                                      params_dtype(state.params)), train=False)
  return logits, {layer: m["a"] for layer, m in maps.items()}


def load_splits(config) -> tuple[datasets.Split, datasets.Split]:
  """The config's train split (its first `train_examples` when set) and test split."""
  splits = datasets.load(config.dataset, config.data_dir, config.manual_dir,
                         train_examples=config.train_examples)
  return splits["train"], splits["test"]


def state_template(config, info: datasets.DatasetInfo):
  """The model, optimiser and abstract checkpoint tree (shapes only) of `config`."""
  model = models.create_model(config.model, info.num_classes)
  tx = optim.sgd(optim.learning_rate_schedule(config, 1), config.momentum, config.weight_decay)
  state = jax.eval_shape(functools.partial(initial_state, model, tx,
                                           image_shape=info.image_shape), jax.random.key(0))
  return model, tx, {"state": state, "epoch_metrics": empty_metrics(TrainMetrics, state.params)}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       resume_command: str | None = None) -> dict | None:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns results.json.

  Data parallel over every device of every process (`parallel`); process 0 writes the files.
  SIGTERM or Ctrl-C saves a checkpoint and returns None, naming `resume_command` if given.
  """
  run_start = time.perf_counter()
  config_validation.validate(config, jax.device_count())
  refused = None
  if is_primary():  # one process records the config; the others learn the outcome
    try:
      workdir_lib.check_same_config(workdir, config)
    except workdir_lib.ConfigMismatchError as e:
      refused = e
  if parallel.any_process(refused is not None):
    raise refused or workdir_lib.ConfigMismatchError(
        f"Process 0 refused workdir {workdir}; its output says why.")
  if os.path.exists(os.path.join(workdir, results.RESULTS_FILE)):
    report(f"{workdir} holds a finished run; returning its results.")
    return results.read(workdir)

  info = datasets.dataset_info(config.dataset)
  train_split, test_split = load_splits(config)
  mesh = parallel.make_mesh()
  train_data, test_data = parallel.replicate((to_device(train_split), to_device(test_split)),
                                             mesh)
  num_train = train_data.labels.shape[0]
  steps_per_pass = -(-num_train // config.batch_size)

  model = models.create_model(config.model, info.num_classes)
  schedule = optim.learning_rate_schedule(config, steps_per_pass)
  tx = optim.sgd(schedule, config.momentum, config.weight_decay)
  init_rng, train_rng = parallel.replicate(jax.random.split(jax.random.key(config.seed)), mesh)
  state = jax.jit(functools.partial(initial_state, model, tx, image_shape=info.image_shape),
                  out_shardings=parallel.replicated(mesh))(init_rng)
  fresh_metrics = lambda: parallel.replicate(empty_metrics(TrainMetrics, state.params), mesh)
  logging.info("Parameters:\n%s", parameter_overview.get_parameter_overview(
      state.params, include_stats=False))
  report(f"{datasets.label(config.dataset, config.data_dir)}: {num_train} training images; model: "
         f"{parameter_overview.count_parameters(state.params):,} parameters.")

  probes = {"train": fixed_examples(train_split, config.attention_images),
            "test": fixed_examples(test_split, config.attention_images)}
  predict_fn = jax.jit(functools.partial(predictions, model, info))
  history_path = os.path.join(workdir, HISTORY_FILE)
  steps_per_epoch = steps_per_pass * config.passes_per_epoch
  images_per_epoch = num_train * config.passes_per_epoch
  with (stopping.StopSignals(announce=is_primary()) as stop,
        checkpoints.CheckpointManager(workdir, config.keep_checkpoints,
                                     steps_per_epoch) as ckpt):
    stop_requested = lambda: parallel.any_process(stop.requested is not None)

    def stopped(where: str):
      report(f"{stop.requested or 'Stopped by another process'}: saved step {int(state.step)} "
             f"({where}) to {ckpt.directory}. To resume, run the same command"
             + (f": {resume_command}" if resume_command else "."))

    history, epoch_metrics = [], fresh_metrics()
    if ckpt.latest_step() is not None:
      saved, _, step = ckpt.restore(None, {"state": state, "epoch_metrics": epoch_metrics},
                                    train_rng)
      state, epoch_metrics = saved["state"], saved["epoch_metrics"]
      if os.path.exists(history_path):  # absent when stopped within the first epoch
        with open(history_path) as f:
          history = [h for h in json.load(f) if h["epoch"] <= step // steps_per_epoch]
      report(f"Resuming {workdir} at step {step} (epoch {step // steps_per_epoch + 1}).")
    elapsed_before = history[-1]["wall_seconds"] if history else 0.0

    compile_start = time.perf_counter()
    steps_per_call = resolved_steps_per_call(config)
    shapes = chunk_shapes(num_train, config.batch_size, steps_per_call)
    compiled = compile_train_steps(model, tx, info, state, train_data, train_rng, shapes, mesh)
    eval_fn = jax.jit(functools.partial(evaluate, model, info, config.eval_batch_size,
                                        mesh=mesh)).lower(state, test_data).compile()
    report(f"Compiled training (batches {shapes}) and evaluation in "
           f"{time.perf_counter() - compile_start:.1f} s.")
    parallel.wait_for_every_process()  # compiling takes each process its own time

    writer = (summaries.SummaryWriter(os.path.join(workdir, "tensorboard"),
                                      purge_step=len(history) + 1 if history else None)
              if is_primary() else summaries.NoSummaries())
    with writer:
      if not history:
        writer.write_text("config", str(config))
      for epoch in range(len(history) + 1, config.num_epochs + 1):
        progress = EpochProgress(f"epoch {epoch}/{config.num_epochs}", images_per_epoch)
        for p in range(config.passes_per_epoch):
          pass_start = int(state.step) - (epoch - 1) * steps_per_epoch - p * steps_per_pass
          if pass_start >= steps_per_pass:
            continue  # done before a resume
          pass_rng = jax.random.fold_in(train_rng, (epoch - 1) * config.passes_per_epoch + p)
          begin = max(pass_start, 0)
          done_before = p * num_train + pass_images(num_train, config.batch_size, 0, begin)

          def after_call(steps, begin=begin, done_before=done_before):
            progress.update(done_before, pass_images(num_train, config.batch_size, begin, steps))
            return stop_requested()

          try:
            state, epoch_metrics, steps = train_pass(
                compiled, config.batch_size, steps_per_call, state, epoch_metrics, train_data,
                pass_rng, begin, after_call)
          except NonFiniteLossError as e:
            step = (epoch - 1) * steps_per_epoch + p * steps_per_pass + e.step_in_pass
            raise NonFiniteLossError(
                f"The training loss is not finite at step {step} (epoch {epoch}, step "
                f"{e.step_in_pass} of pass {p + 1}). Stopped without saving: the checkpoints in "
                f"{ckpt.directory} hold the last good state. Lower config.learning_rate or "
                "check the data.", e.step_in_pass) from None
          progress.trained += pass_images(num_train, config.batch_size, begin, steps)
          if begin + steps < steps_per_pass:  # stopped within the pass
            ckpt.save(int(state.step), {"state": state, "epoch_metrics": epoch_metrics},
                      train_rng)
            stopped(f"within epoch {epoch}")
            return None
        summary = epoch_summary(epoch, epoch_metrics, eval_fn, state, test_data, config,
                                schedule, progress.trained, progress.seconds())
        summary["wall_seconds"] = elapsed_before + time.perf_counter() - run_start
        history.append(summary)
        write_epoch_summaries(writer, model, summary, probes, predict_fn, state, config)
        if is_primary():
          workdir_lib.write_json(history_path, history, overwrite=True)  # before the checkpoint
        epoch_metrics = fresh_metrics()
        ckpt.save(int(state.step), {"state": state, "epoch_metrics": epoch_metrics}, train_rng)
        eta = (config.num_epochs - epoch) * images_per_epoch / summary["images_per_second"]
        report(f"epoch {epoch}/{config.num_epochs} " + " ".join(
            f"{k} {v:.4g}" for k, v in summary.items()
            if k not in ("epoch", "epoch_seconds", "wall_seconds")) + f" eta {eta:.0f}s")
        if epoch < config.num_epochs and stop_requested():
          stopped(f"end of epoch {epoch}")
          return None

  final = {split: predict_fn(state, images) for split, (images, _) in probes.items()
           if model.attention}
  if is_primary():
    save_figures(workdir, model, history, probes, final,
                 datasets.class_names(config.dataset, config.data_dir))
  train_seconds = sum(h["epoch_seconds"] for h in history)
  trained_images = sum(h["images_per_second"] * h["epoch_seconds"] for h in history)
  run_results = results.make(
      config, history, wall_seconds=elapsed_before + time.perf_counter() - run_start,
      images_per_second=trained_images / train_seconds,
      dataset_label=datasets.label(config.dataset, config.data_dir))
  if is_primary():
    results.write(workdir, run_results)
  final = run_results["final"]
  report(f"Done in {run_results['wall_seconds']:.0f} s: final test top-1 error "
         f"{final['test_top1_error']:.2f}%, top-5 {final['test_top5_error']:.2f}% "
         f"({run_results['dataset_label']}); results in {workdir}.")
  return run_results


def epoch_summary(epoch, epoch_metrics, eval_fn, state, test_data, config, schedule,
                  trained_images, epoch_seconds) -> dict[str, float]:
  """The epoch's train metrics, learning rate, speed (over the images this process trained: a
  resumed epoch counts only its rest) and, on evaluated epochs, test metrics."""
  train_summary = jax.device_get(epoch_metrics.compute())
  summary = {
      "epoch": epoch,
      "train_loss": float(train_summary["loss"]),
      "train_error": 100 * (1 - float(train_summary["accuracy"])),
      "learning_rate": float(schedule(int(state.step) - 1)),
      "images_per_second": trained_images / epoch_seconds,
      "epoch_seconds": epoch_seconds,
  }
  if epoch % config.eval_every_epochs == 0 or epoch == config.num_epochs:
    test = jax.device_get(eval_fn(state, test_data).compute())
    summary.update(test_loss=float(test["loss"]),
                   test_top1_error=100 * (1 - float(test["accuracy"])),
                   test_top5_error=100 * (1 - float(test["top5_accuracy"])))
  return summary


def write_epoch_summaries(writer, model, summary, probes, predict_fn, state, config):
  """TensorBoard scalars of the epoch and, every few epochs, attention overlays."""
  epoch = summary["epoch"]
  writer.write_scalars(epoch, {k: v for k, v in summary.items() if k != "epoch"})
  if model.attention and (epoch % config.attention_every_epochs == 0
                          or epoch == config.num_epochs):
    for split, (images, _) in probes.items():
      overlays = plots.attention_overlays(images, predict_fn(state, images)[1], scale=4)
      writer.write_images(epoch, {f"attention/{split}": overlays})
  writer.flush()


def save_figures(workdir, model, history, probes, predicted, class_names):
  """learning_curves.png and, with attention, attention_{train,test}.png in `workdir`: the
  probes' maps, true and predicted classes (`predicted[split]` = (logits, maps))."""
  plots.save_learning_curves(history, os.path.join(workdir, "learning_curves.png"))
  if model.attention:
    for split, (images, labels) in probes.items():
      logits, maps = predicted[split]
      plots.save_attention_grid(images, maps, os.path.join(workdir, f"attention_{split}.png"),
                                labels, class_names, jax.nn.softmax(logits))
