"""The PyTorch reference's whole published table, typed from its README (iversonicter/
Learn-to-pay-attention at 1b1af30, 18d4f1f and fd6aad8), and its groups' configs."""

import statistics

from ltpa_jax.analysis import reference
from ltpa_jax.analysis import studies
from ltpa_jax.config import files

# (model, README commit, code commit, config): (top-1, top-5) error % of each run, as published.
PUBLISHED = {
    ("VGG19", "1b1af30", "1b1af30", "vgg19"): ((25.89, 7.17), (26.35, 6.93), (26.14, 7.37)),
    ("VGG19-att (sigmoid, shared u)", "1b1af30", "1b1af30", "vgg19_att"):
        ((24.6, 6.32), (24.42, 6.21), (24.57, 6.22)),
    ("VGG19", "18d4f1f", "845f1d4", "vgg19_later"): ((26.2, 7.65), (26.84, 7.53), (27.39, 7.47)),
    ("VGG19-att (softmax, separate u)", "18d4f1f", "845f1d4", "vgg19_att_softmax"):
        ((28.2, 7.63), (27.17, 7.49), (27.29, 7.57)),
    ("VGG19-att (sigmoid, separate u)", "18d4f1f", "845f1d4", "vgg19_att_sigmoid"):
        ((25.2, 6.52), (25.94, 6.71), (25.24, 6.75)),
    ("VGG19-att (sigmoid, shared u)", "fd6aad8", "845f1d4", "vgg19_att_sigmoid_shared"):
        ((26.98, 7.55), (27.56, 7.56), (26.64, 7.45)),
}
# Each group's mean ± sample std (ddof=1), top-1 then top-5, worked out by hand.
MEAN_STD = ("26.13 ± 0.23", "7.16 ± 0.22", "24.53 ± 0.10", "6.25 ± 0.06", "26.81 ± 0.60",
            "7.55 ± 0.09", "27.55 ± 0.56", "7.56 ± 0.07", "25.46 ± 0.42", "6.66 ± 0.12",
            "27.06 ± 0.47", "7.52 ± 0.06")


def test_every_published_run_is_held_with_its_commits_and_config():
  held = {(g.model, g.published, g.code, g.config): g.runs for g in reference.GROUPS}
  assert held == PUBLISHED
  assert sum(len(runs) for runs in held.values()) == 18


def test_each_groups_mean_and_sample_std_is_printed():
  lines = [line for line in reference.markdown() if line.startswith("| VGG19")]
  assert len(lines) == 6
  printed = [cell.strip() for line in lines for cell in line.split("|")[6:8]]
  assert tuple(printed) == MEAN_STD
  for (top1, top5), cells in zip((zip(*runs) for runs in PUBLISHED.values()),
                                 zip(printed[::2], printed[1::2])):
    for values, cell in zip((top1, top5), cells):
      assert cell == f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def test_the_notes_say_how_the_reference_chose_its_numbers_and_what_differs():
  notes = " ".join(reference.NOTES)
  for caveat in ("taken on its own", "ON THE TEST SET",
                 "hard-coded `attention = True`", "batch 128", "re-split"):
    assert caveat in notes


def test_named_sets_train_the_groups_configs():
  assert reference.SETS["later"] == ("vgg19_later", "vgg19_att_softmax", "vgg19_att_sigmoid",
                                     "vgg19_att_sigmoid_shared")
  assert studies.CONFIGS == reference.SETS["early"] == ("vgg19", "vgg19_att")
  configs = studies.named_configs(["later", "tiny"], {"seed": 3})
  assert list(configs) == [*reference.SETS["later"], "tiny"]
  assert all(config.seed == 3 for config in configs.values())
  assert set(reference.SETS["reference"]) <= set(files.names())
