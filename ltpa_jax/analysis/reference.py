"""The PyTorch reference's published table, whole: iversonicter/Learn-to-pay-attention's README.

Six groups of three runs, each with the README commit that published it, the code that produced
it and the recipe as that code had it, and this project's config of the same recipe. Every number
is a run's best top-1 error and, taken on its own, its best top-5 error over all 100 epochs, both
chosen on CIFAR-100's official test set (main.py keeps best_acc and best_top5 apart):
`results.json`'s `best_each_on_test` is the comparable number.
"""

from __future__ import annotations

from typing import NamedTuple

from ltpa_jax.analysis.stats import format_mean_std


class Group(NamedTuple):
  model: str
  config: str  # this project's config (configs/<config>.py) of the group's recipe
  published: str  # the reference's README commit
  code: str  # the commit of the code that produced the runs
  recipe: str  # as that code had it
  runs: tuple[tuple[float, float], ...]  # (top-1, top-5) error % per run


_EARLY = "b2 3 convs, batch 64, wd 1e-4, lr x0.1 at 50/70/90"
_LATER = "b2 3 convs, batch 128 (its README: 64), wd 5e-5, lr x0.1 at 50/70/90"
GROUPS = (
    Group("VGG19", "vgg19", "1b1af30", "1b1af30", _EARLY,
          ((25.89, 7.17), (26.35, 6.93), (26.14, 7.37))),
    Group("VGG19-att (sigmoid, shared u)", "vgg19_att", "1b1af30", "1b1af30", _EARLY,
          ((24.60, 6.32), (24.42, 6.21), (24.57, 6.22))),
    Group("VGG19", "vgg19_later", "18d4f1f", "845f1d4", _LATER,
          ((26.2, 7.65), (26.84, 7.53), (27.39, 7.47))),
    Group("VGG19-att (softmax, separate u)", "vgg19_att_softmax", "18d4f1f", "845f1d4", _LATER,
          ((28.2, 7.63), (27.17, 7.49), (27.29, 7.57))),
    Group("VGG19-att (sigmoid, separate u)", "vgg19_att_sigmoid", "18d4f1f", "845f1d4", _LATER,
          ((25.2, 6.52), (25.94, 6.71), (25.24, 6.75))),
    Group("VGG19-att (sigmoid, shared u)", "vgg19_att_sigmoid_shared", "fd6aad8", "845f1d4",
          _LATER, ((26.98, 7.55), (27.56, 7.56), (26.64, 7.45))),
)
# Jetley et al. 2018, CIFAR-100 top-1 error %, 300 epochs, one number each.
PAPER = (("VGG", 30.62), ("VGG-att3-concat-pc", 22.97))
NOTES = (
    "Each reference number is a run's best top-1 and, taken on its own, its best top-5 over all "
    "epochs, both chosen ON THE TEST SET: compare them with the `best-each` columns, never with "
    "`final`.",
    "The reference's VGG19 rows after 25.89 came from code that hard-coded `attention = True` "
    "(from 3e8d5fc on, its -attention flag is never read): its repository cannot confirm that "
    "they had no attention.",
    "The later code (main.py at 399c726) trained with batch 128 and weight decay 5e-5; its README "
    "still says batch 64.",
    "The reference used CIFAR-100's official test split; this project's CIFAR-100 is re-split "
    "(500/100 images per class of all 60,000), so its numbers compare only approximately.",
)
# Named sets of configs for `table --configs`: the early groups, the later ones, all.
SETS = {
    "early": tuple(g.config for g in GROUPS if g.published == "1b1af30"),
    "later": tuple(g.config for g in GROUPS if g.published != "1b1af30"),
    "reference": tuple(g.config for g in GROUPS),
}


def markdown() -> list[str]:
  """The reference's table (a row per group: mean ± sample std and each run) and its notes."""
  lines = ["| model | recipe | published (code) | config | n | best top-1 | best top-5 | "
           "runs (top-1/top-5) |", "|---|---|---|---|---|---|---|---|"]
  for group in GROUPS:
    top1, top5 = zip(*group.runs)
    runs = ", ".join(f"{a:g}/{b:g}" for a, b in group.runs)
    lines.append(f"| {group.model} | {group.recipe} | {group.published} ({group.code}) | "
                 f"`{group.config}` | {len(group.runs)} | {format_mean_std(top1)} | "
                 f"{format_mean_std(top5)} | {runs} |")
  for name, error in PAPER:
    lines.append(f"| paper: {name} | 300 epochs | Jetley et al. 2018 | - | 1 | {error:.2f} | - | "
                 f"{error:g} |")
  return lines + [""] + [f"- {note}" for note in NOTES]
