"""Every config field, declared once: `FIELDS`.

Each `Field` gives its path, default and one-line doc, the values it allows (the tuples and dicts
of the modules that use it, so that a value added there counts here), the field whose value it is
checked with (`only_with`), and its history: the value a run recorded before the field existed
had (`before`) and its former names. From it come `defaults.get_config()`, `validation`'s tables,
`rundir.workdir.upgraded` (old config.json files) and docs/config.md (`markdown`; the command
`REGENERATE` rewrites it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ltpa_jax.core import optim
from ltpa_jax.data import datasets
from ltpa_jax.model import models


class Range(NamedTuple):
  """An interval of numbers; a bound of None is unbounded."""

  low: float | None = None
  high: float | None = None
  low_closed: bool = False
  high_closed: bool = False

  def __contains__(self, x) -> bool:
    above = self.low is None or x > self.low or (self.low_closed and x == self.low)
    below = self.high is None or x < self.high or (self.high_closed and x == self.high)
    return above and below

  def __str__(self) -> str:
    if self.high is None:
      return f"{'>=' if self.low_closed else '>'} {self.low}"
    left, right = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
    return f"in {left}{self.low}, {self.high}{right}"


POSITIVE = Range(0)
NON_NEGATIVE = Range(0, low_closed=True)


class _Always:
  """`Field.before` of a field every recorded run has."""

  def __repr__(self) -> str:
    return "ALWAYS"


ALWAYS = _Always()


class Field(NamedTuple):
  """One config field. With a `kind`, a placeholder: None (the default) or a `kind` (data_dir)."""

  path: str
  default: Any
  doc: str
  choices: Any = None  # allowed values; for a sequence, a non-empty subset without duplicates
  range: Range | None = None
  only_with: tuple[str, Any] | None = None  # (path, value): checked only when path has value
  before: Any = ALWAYS  # the value of runs recorded before the field existed
  old_names: tuple[str, ...] = ()  # the names runs recorded it under before
  kind: type | None = None  # a placeholder's type
  shown: bool = False  # named in the report's model and recipe columns (report.SHOWN)


FIELDS = (
    # Data: a TFDS dataset read through tfds.data_source (prepared without TensorFlow if needed).
    Field("dataset", "cifar100", "the TFDS dataset", choices=datasets.DATASETS),
    Field("data_dir", None, "TFDS data_dir; None: TFDS's default", kind=str),
    Field("manual_dir", None, "the official archives, for offline preparation", kind=str),
    Field("train_examples", 0, "train on the first N training examples only (0: all); smoke tests"),
    Field("data_mean", None, "per-channel mean of [0, 1] pixels, subtracted from the images; "
          "None: the dataset's (data/datasets.py; CIFAR-100: the reference code's constants)",
          kind=tuple, before=None),
    Field("data_std", None, "per-channel std of [0, 1] pixels, dividing the images; None: the "
          "dataset's", kind=tuple, before=None),
    # Model (ltpa_jax.model.models.VGGAttention, which takes each model.* field by name).
    Field("model.attention", True, "False: plain VGG19, Linear(512 -> classes) on g", shown=True),
    Field("model.attention_type", "linear", "linear: the paper's <u, l + g> or <l, g> | grid: "
          "Schlemper et al.'s gate phi(relu(W_l l + W_g g))", choices=models.ATTENTION_TYPES,
          before="linear", shown=True),
    Field("model.attn_features", 256, "grid: the gate's hidden channels (x width_multiplier)",
          range=Range(1, low_closed=True), only_with=("model.attention_type", "grid"),
          before=256),
    Field("model.normalisation", "softmax", "softmax (sum of a*l) | sigmoid (mean of a*l)",
          choices=models.NORMALISATIONS, shown=True),
    Field("model.compatibility", "pc", "pc: <u, l + g> | dp: <l, g>",
          choices=models.COMPATIBILITIES),
    Field("model.attended_layers", (1, 2, 3), "which of l1 (b3), l2 (b4), l3 (b5)",
          choices=models.ATTENDED_LAYERS),
    Field("model.aggregation", "concat", "concat: one classifier | indep: one per layer, averaged",
          choices=models.AGGREGATIONS),
    Field("model.shared_u", False, "one compatibility vector u for all attended layers",
          shown=True),
    Field("model.attention_position", "before", "before | after the max-pools",
          choices=models.ATTENTION_POSITIONS),
    Field("model.b2_convs", 2, "convs in block b2 (the reference table's runs used 3)",
          range=Range(1, low_closed=True), shown=True),
    Field("model.batchnorm_one_pass", False, "BatchNorm variance as E[x^2] - E[x]^2 in one pass",
          before=False),
    Field("model.attention_narrow_sums", False, "attention's sums of a*l and <u, l + g> in the "
          "compute dtype with float32 accumulation (no float32 copy of l); u as a contraction, "
          "not a 1x1 conv (speed; the same maths in float64)", before=False),
    Field("model.max_pool_by_reshape", False, "max-pools as a max over a reshape (speed: no "
          "select_and_scatter); on ties the gradient is split among the tied elements",
          before=False),
    Field("model.conv_bias_free", False, "no bias on the convs before BatchNorm, which cancels it "
          "in training (speed); exported as zero biases", before=False),
    Field("model.width_multiplier", 1.0, "scales every channel width (tiny models for tests)",
          range=POSITIVE),
    Field("model.init_scheme", "kaiming", "kaiming: normal fan_in, BN scale ~ N(0, 0.01) | "
          "xavier: uniform gain sqrt(2), BN scale ~ U(0, 1)", choices=models.INIT_SCHEMES,
          old_names=("init",)),
    Field("model.dtype", "float32", "compute dtype: float32 | bfloat16 (params, BN stats float32) "
          "| float64 (tests of exact maths; needs JAX_ENABLE_X64=1)", choices=models.DTYPES),
    # Optimisation: SGD with momentum, weight decay added to the gradient (torch.optim.SGD).
    Field("batch_size", 64, "training batch (over all devices)", range=POSITIVE),
    Field("num_epochs", 100, "epochs of training", range=POSITIVE, shown=True),
    Field("learning_rate", 0.1, "initial learning rate", range=POSITIVE),
    Field("momentum", 0.9, "SGD momentum", range=Range(0, 1, low_closed=True)),
    Field("weight_decay", 5e-5, "added to the gradient, every parameter", range=NON_NEGATIVE,
          shown=True),
    Field("lr_schedule", "piecewise", "piecewise: x lr_decay at lr_boundaries_epochs | step: "
          "x lr_decay every lr_step_epochs", choices=optim.SCHEDULES),
    Field("lr_boundaries_epochs", (50, 70, 90), "piecewise: the epochs where lr is decayed "
          "(increasing, each in (0, num_epochs))",
          only_with=("lr_schedule", "piecewise")),
    Field("lr_step_epochs", 25, "step: epochs between decays", range=POSITIVE,
          only_with=("lr_schedule", "step")),
    Field("lr_decay", 0.1, "the factor of each decay", range=Range(0, 1, high_closed=True)),
    Field("lr_scheduler_steps_first", False, "True: the schedule as the reference code ran it "
          "under PyTorch >= 1.1, scheduler.step() first in each epoch, so every decay comes one "
          "epoch early (after epochs 49/69/89 for 50/70/90); False: as PyTorch 1.0 ran it",
          before=False),
    Field("passes_per_epoch", 1, "the SaoYan port counts 3 passes over the data as one epoch",
          range=POSITIVE),
    # XLA:CPU runs steps ~10x slower inside a loop: one step a call there by default.
    Field("steps_per_call", 0, "SGD steps per compiled call; 0: one on CPU, a whole pass (one "
          "lax.scan) elsewhere; a stop or progress line waits for the call", range=NON_NEGATIVE),
    # Evaluation and logging.
    Field("eval_batch_size", 1000, "evaluation batch (over all devices)", range=POSITIVE),
    Field("eval_every_epochs", 1, "evaluate on the test split every N epochs", range=POSITIVE),
    Field("attention_every_epochs", 10, "attention overlays to TensorBoard every N epochs"),
    Field("attention_images", 8, "fixed train and test images whose attention maps are shown"),
    Field("keep_checkpoints", 3, "checkpoints of the last k epochs are kept"),
    Field("seed", 0, "the run's random seed"),
)
REGENERATE = ("python -c \"from ltpa_jax.config import fields; "
              "fields.write_reference('docs/config.md')\"")


def shown() -> tuple[str, ...]:
  """The paths named in the report's model and recipe columns."""
  return tuple(f.path for f in FIELDS if f.shown)


def markdown() -> str:
  """docs/config.md: every field with its default, doc, allowed values and history."""
  lines = ["# Config fields", "",
           f"Generated from `ltpa_jax/config/fields.py` (edit the table there, then run "
           f"`{REGENERATE}`). Override any field with `--config.<path>=<value>`.", "",
           "| field | default | meaning | allowed | history |", "|---|---|---|---|---|"]
  for f in FIELDS:
    allowed = [", ".join(map(repr, f.choices))] if f.choices is not None else []
    if allowed and isinstance(f.default, tuple):
      allowed = [f"a subset of {allowed[0]}"]
    allowed += [str(f.range)] if f.range is not None else []
    allowed += ["(checked only with {}={!r})".format(*f.only_with)] if f.only_with else []
    history = [] if f.before is ALWAYS else [f"{f.before!r} in runs recorded before it"]
    history += [f"formerly `{name}`" for name in f.old_names]
    default = f"None or {f.kind.__name__}" if f.kind else repr(f.default)
    cells = [f"`{f.path}`", f"`{default}`", f.doc, " ".join(allowed) or "-",
             "; ".join(history) or "-"]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  return "\n".join(lines) + "\n"


def write_reference(path: str) -> None:
  """Writes `markdown()` to `path` (docs/config.md)."""
  with open(path, "w") as f:
    f.write(markdown())
