"""plots: attention overlays, the attention grid, learning curves and the other figures as image
files, their error axes within [0, 100]."""

from matplotlib.figure import Figure
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from ltpa_jax.rundir import plots


def _hotness(rgb):
  """Red minus blue: the jet colormap runs from blue (least attended) to red (most)."""
  return rgb[..., 0].astype(int) - rgb[..., 2].astype(int)


def test_overlays_layout_and_first_panel_is_the_image():
  images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
  maps = {"l1": np.ones((2, 32, 32)), "l2": np.ones((2, 16, 16)), "l3": np.ones((2, 8, 8))}
  overlays = plots.attention_overlays(images, maps)
  assert overlays.shape == (2, 32, 32 * 4, 3) and overlays.dtype == np.uint8
  np.testing.assert_array_equal(overlays[:, :, :32], images)
  assert plots.attention_overlays(images, maps, scale=3).shape == (2, 96, 96 * 4, 3)


def test_map_concentrated_in_a_corner_makes_that_corner_hottest():
  images = np.full((1, 32, 32, 1), 128, np.uint8)  # grayscale
  corner = np.zeros((1, 8, 8), np.float32)
  corner[0, 0, 7] = 1.0  # top right
  overlays = plots.attention_overlays(images, {"l3": corner})
  image, panel = overlays[0, :, :32], overlays[0, :, 32:]
  assert (image == 128).all()  # gray stays gray in RGB
  hot = _hotness(panel)
  row, col = np.unravel_index(np.argmax(hot), hot.shape)
  assert row < 4 and col >= 28  # the map's top-right cell covers pixels [0, 4) x [28, 32)
  assert hot[0, 31] > 0 > hot[31, 0]  # red at the corner, blue across


def test_overlays_refuse_maps_of_other_images():
  images = np.zeros((2, 32, 32, 3), np.uint8)
  with pytest.raises(ValueError, match=r"'l1'.*\(2, h, w\)"):
    plots.attention_overlays(images, {"l1": np.zeros((3, 8, 8))})
  with pytest.raises(ValueError, match="uint8 images"):
    plots.attention_overlays(images.astype(np.float32), {})


def test_attention_grid_png(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 32, 32, 3), np.uint8)
  maps = {"l1": rng.random((3, 32, 32)), "l2": rng.random((3, 16, 16))}
  path = tmp_path / "attention.png"
  plots.save_attention_grid(images, maps, str(path), labels=[2, 0, 1],
                            class_names=["apple", "bee", "cat"])
  with Image.open(path) as png:
    assert png.format == "PNG" and png.size == (130 * 3, 130 * 3 + 30)


def test_learning_curves_png_with_sparse_evaluations(tmp_path):
  history = [dict(epoch=e, train_loss=4.0 / e, train_error=90.0 / e) for e in range(1, 6)]
  for h in history[1::2] + history[-1:]:
    h.update(test_loss=4.5 / h["epoch"], test_top1_error=95.0 / h["epoch"],
             test_top5_error=80.0 / h["epoch"])
  path = tmp_path / "curves.png"
  plots.save_learning_curves(history, str(path))
  with Image.open(path) as png:
    assert png.format == "PNG" and png.size == (1000, 400)
  with pytest.raises(ValueError, match="No epochs"):
    plots.save_learning_curves([], str(tmp_path / "empty.png"))


def test_attention_grid_of_real_cifar100_images(tmp_path, cifar100_data_dir):
  source = tfds.data_source("cifar100", data_dir=cifar100_data_dir)["test"]
  records = source.__getitems__([0, 1])
  images = np.stack([r["image"] for r in records])
  labels = [r["label"] for r in records]
  rng = np.random.default_rng(0)
  maps = {f"l{s}": rng.dirichlet(np.ones(n * n), 2).reshape(2, n, n)
          for s, n in ((1, 32), (2, 16), (3, 8))}
  path = tmp_path / "attention.png"
  plots.save_attention_grid(images, maps, str(path), labels,
                            source.dataset_info.features["label"].names)
  with Image.open(path) as png:
    assert png.size == (130 * 4, 130 * 2 + 30)


def test_attention_grid_names_true_and_predicted_classes_and_marks_mistakes_red(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 32, 32, 3), np.uint8)
  maps = {"l1": rng.random((2, 32, 32)), "l2": rng.random((2, 16, 16))}
  probabilities = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]  # row 0 right (apple), row 1 wrong (cat)
  path = tmp_path / "attention.png"
  plots.save_attention_grid(images, maps, str(path), labels=[0, 1],
                            class_names=["apple", "bee", "cat"], probabilities=probabilities)
  with Image.open(path) as png:
    assert png.size == (round(130 * (3 + plots.TEXT_WIDTH)), 130 * 2 + 30)  # + the top-3 column
    margin = np.asarray(png.convert("RGB"))[:, :30].astype(int)
  red = (margin[..., 0] > 200) & (margin[..., 1] < 80) & (margin[..., 2] < 80)
  assert not red[:160].any() and red[160:].any()  # the second row's labels only


def test_top_classes_are_sorted_most_probable_first():
  assert plots.top_classes([[0.1, 0.5, 0.15, 0.25]]) == [[(1, 0.5), (3, 0.25), (2, 0.15)]]
  assert plots.top_classes([[0.6, 0.4]], k=3) == [[(0, 0.6), (1, 0.4)]]


@pytest.fixture
def saved_figures(monkeypatch):
  """The figures saved during the test, in order (saved as ever)."""
  figures, save = [], Figure.savefig

  def savefig(fig, *args, **kwargs):
    figures.append(fig)
    return save(fig, *args, **kwargs)

  monkeypatch.setattr(Figure, "savefig", savefig)
  return figures


def test_every_error_axis_stays_within_0_and_100(tmp_path, saved_figures):
  """Errors near 0 and 100 (std bars beyond 100): each axis of an error (%) ends within
  [0, 100]; narrow errors keep a narrow axis."""
  history = [dict(epoch=e, train_loss=1.0, train_error=error, test_loss=1.0,
                  test_top1_error=error, test_top5_error=100 - error)
             for e, error in enumerate((99.9, 50.0, 0.1), 1)]
  plots.save_learning_curves(history, str(tmp_path / "curves.png"))
  results = [dict(eps=eps, top1_error=error, top5_error=error) for eps, error in ((0, 0.1),
                                                                                  (8, 100.0))]
  plots.save_robustness_curves({"run": {"results": results}}, str(tmp_path / "robustness.png"))
  errors = [[0.1, 0.3], [50.0, 60.0], [99.0, 100.0, 91.0]]
  sweeps = [({"learning_rate": [0.01, 0.1, 1.0]}, errors),
            ({"learning_rate": [0.01, 0.1, 1.0], "seed": [0]}, errors),  # a heatmap
            ({"learning_rate": [0.01, 0.1, 1.0], "weight_decay": [0.0], "momentum": [0.9]},
             errors),
            ({"learning_rate": [0.01, 0.1]}, [[25.2, 25.9], [26.8, 27.3]])]
  for grid, sweep_errors in sweeps:
    plots.save_sweep(grid, sweep_errors, str(tmp_path / "sweep.png"))
  limits = [[(ax.get_ylabel(), *ax.get_ylim()) for ax in fig.axes if "error" in ax.get_ylabel()]
            for fig in saved_figures]
  assert [len(axes) for axes in limits] == [1, 2, 1, 1, 3, 1]  # the heatmap's: its colour bar
  for figure, axes in enumerate(limits):
    for label, low, high in axes:
      assert 0 <= low < high <= 100, f"figure {figure}, {label}: {low:g} to {high:g}"
  _, low, high = limits[-1][0]
  assert 20 < low < 25.2 and 27.3 < high < 30, (low, high)
