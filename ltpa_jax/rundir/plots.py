"""Figures of a run: attention maps over their images, and learning curves (matplotlib, Agg).

Figures are built with `matplotlib.figure.Figure`, never pyplot: no global state, no display.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib
from matplotlib import ticker
from matplotlib.figure import Figure
import numpy as np
from PIL import Image

from ltpa_jax.base import errors

HEAT_WEIGHT = 0.4  # overlay = 0.6 * image + 0.4 * heatmap, as the reference's visualisation
COLORMAP = "jet"
TEXT_WIDTH = 1.6  # the top-3 column's width, in image columns


def check_image_path(path: str):
  """Raises UserError unless `path` ends in an image format matplotlib writes (.png, .pdf, ...)."""
  formats = Figure().canvas.get_supported_filetypes()
  if os.path.splitext(path)[1].lstrip(".").lower() not in formats:
    raise errors.UserError(f"{path} is not an image file name: end it in .png (or .jpg, .pdf, "
                           ".svg: any format matplotlib writes).")


def attention_overlays(images, maps: Mapping[str, object], scale: int = 1) -> np.ndarray:
  """The images and, for each attended layer, its attention map blended over them.

  Args:
    images: uint8 (N, H, W, C), C = 1 (grayscale, shown as gray RGB) or 3.
    maps: layer name -> attention maps (N, h, w), e.g. a model's `maps[name]["a"]`.
    scale: each image is enlarged `scale` times (nearest), e.g. for TensorBoard.

  Returns:
    uint8 (N, scale*H, scale*W*(1 + len(maps)), 3): per row the image, then one panel per layer
    in the order of `maps`. Each map is upsampled bilinearly (pixel centres aligned, as torch's
    `interpolate(align_corners=False)`) to the image size, min-max scaled to [0, 1] per image
    (a constant map becomes 0), coloured with the jet colormap and blended as
    0.6 * image + 0.4 * heatmap: red marks the most attended pixels, blue the least.
  """
  images = _rgb(images)
  n, h, w, _ = images.shape
  images = images.repeat(scale, axis=1).repeat(scale, axis=2)
  colormap = matplotlib.colormaps[COLORMAP]
  panels = [images]
  for name, layer_maps in maps.items():
    layer_maps = np.asarray(layer_maps, np.float32)
    if layer_maps.ndim != 3 or layer_maps.shape[0] != n:
      raise ValueError(f"Attention maps {name!r}: expected shape ({n}, h, w) for {n} images, "
                       f"got {layer_maps.shape}.")
    heat = colormap(_min_max(_upsample(layer_maps, h * scale, w * scale)))[..., :3]
    panels.append((1 - HEAT_WEIGHT) * images + HEAT_WEIGHT * heat)
  return np.round(np.concatenate(panels, axis=2) * 255).astype(np.uint8)


def save_attention_grid(images, maps: Mapping[str, object], path: str, labels=None,
                        class_names: Sequence[str] | None = None, probabilities=None,
                        row_names: Sequence[str] | None = None):
  """Saves a grid: one row per image, columns the image and each layer's overlay.

  Each row is named by `row_names` (e.g. file names) and, given `labels` (N,) ints, its true
  class; given `probabilities` (N, classes), its predicted class too, in red when it is not the
  true one, and a last column lists its top-3 classes. Classes are named by `class_names`.
  """
  overlays = attention_overlays(images, maps)
  columns = ["image"] + [f"{name} ({np.shape(m)[1]}x{np.shape(m)[2]})"
                         for name, m in maps.items()]
  n, width = overlays.shape[0], overlays.shape[2] // len(columns)
  name = lambda c: class_name(c, class_names)
  top = None if probabilities is None else top_classes(probabilities)
  ratios = [1] * len(columns) + ([TEXT_WIDTH] if top else [])
  fig = Figure(figsize=(1.3 * sum(ratios), 1.3 * n + 0.3), layout="constrained")
  axes = fig.subplots(n, len(ratios), squeeze=False, width_ratios=ratios)
  for i in range(n):
    for j, column in enumerate(columns):
      ax = axes[i, j]
      ax.imshow(overlays[i, :, j * width:(j + 1) * width], interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(column, fontsize=9)
    lines = [row_names[i]] if row_names is not None else []
    if labels is not None:
      lines.append(f"true: {name(int(labels[i]))}")
    if top:
      lines.append(f"pred: {name(top[i][0][0])}")
      _text_panel(axes[i, -1], [f"{name(c)} {100 * p:.1f}%" for c, p in top[i]],
                  "top 3" if i == 0 else None)
    wrong = labels is not None and top and top[i][0][0] != int(labels[i])
    axes[i, 0].set_ylabel("\n".join(lines), fontsize=8, color="red" if wrong else "black")
  fig.savefig(path, dpi=100)


def class_name(label: int, class_names: Sequence[str] | None) -> str:
  """Class `label` by name, or by number without `class_names`."""
  return class_names[label] if class_names else str(label)


def top_classes(probabilities, k: int = 3) -> list[list[tuple[int, float]]]:
  """Per row of `probabilities` (N, classes), its `k` most probable (class, probability), most
  probable first."""
  probabilities = np.asarray(probabilities, np.float64)
  order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
  return [[(int(c), float(p[c])) for c in row] for p, row in zip(probabilities, order)]


def _text_panel(ax, lines: Sequence[str], title: str | None):
  """Writes `lines` in an axes without frame, the first in bold."""
  ax.axis("off")
  for row, line in enumerate(lines):
    ax.text(0.02, 0.8 - 0.3 * row, line, fontsize=8, transform=ax.transAxes,
            fontweight="bold" if row == 0 else "normal")
  if title:
    ax.set_title(title, fontsize=9, loc="left")


def save_learning_curves(history: Sequence[Mapping[str, float]], path: str):
  """Saves a PNG of loss and error (%) against epoch, train and test.

  `history` holds one dict per epoch with `epoch`, `train_loss`, `train_error` and, on epochs
  with an evaluation, `test_loss`, `test_top1_error`, `test_top5_error`.
  """
  if not history:
    raise ValueError("No epochs in the history: nothing to plot.")
  fig = Figure(figsize=(10, 4), layout="constrained")
  loss_ax, error_ax = fig.subplots(1, 2)
  curves = (
      (loss_ax, "train_loss", "train"), (loss_ax, "test_loss", "test"),
      (error_ax, "train_error", "train top-1"), (error_ax, "test_top1_error", "test top-1"),
      (error_ax, "test_top5_error", "test top-5"),
  )
  for ax, key, label in curves:
    points = [(h["epoch"], h[key]) for h in history if key in h]
    if points:
      ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=label)
  for ax, ylabel in ((loss_ax, "cross-entropy loss"), (error_ax, "error (%)")):
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
  _bound_error_axis(error_ax)
  fig.savefig(path, dpi=100)


def _bound_error_axis(ax):
  """Keeps the autoscaled y axis of an error (%) within [0, 100], where errors lie."""
  low, high = ax.get_ylim()
  ax.set_ylim(max(low, 0.0), min(high, 100.0))


def _rgb(images) -> np.ndarray:
  """uint8 (N, H, W, 1 or 3) images as float RGB in [0, 1]."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"Expected uint8 images (N, H, W, 1 or 3), got {images.dtype} "
                     f"{images.shape}.")
  return np.broadcast_to(images, images.shape[:3] + (3,)).astype(np.float32) / 255


def _upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of (N, h, w) maps to (N, height, width), pixel centres aligned."""
  if maps.shape[1:] == (height, width):
    return maps
  resize = lambda m: Image.fromarray(m).resize((width, height), Image.Resampling.BILINEAR)
  return np.stack([np.asarray(resize(m)) for m in maps])


def _min_max(maps: np.ndarray) -> np.ndarray:
  """Each map scaled to [0, 1]; a constant map becomes 0."""
  low = maps.min(axis=(1, 2), keepdims=True)
  span = maps.max(axis=(1, 2), keepdims=True) - low
  return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def save_robustness_curves(runs: Mapping[str, Mapping], path: str):
  """Saves top-1 and top-5 test error (%) against the FGSM eps, one line per run.

  `runs` maps a run's name to its robustness results (`fgsm.evaluate_run`): `results`, one
  dict per eps with `eps`, `top1_error` and `top5_error`.
  """
  fig = Figure(figsize=(10, 4), layout="constrained")
  for ax, key, title in zip(fig.subplots(1, 2), ("top1_error", "top5_error"), ("top-1", "top-5")):
    for name, run in runs.items():
      ax.plot([r["eps"] for r in run["results"]], [r[key] for r in run["results"]], marker=".",
              label=name)
    ax.set_xlabel("FGSM eps (pixel units, 0-255)")
    ax.set_ylabel(f"test {title} error (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    _bound_error_axis(ax)
  fig.savefig(path, dpi=100)


def save_adversarial_examples(clean, adversarial, labels, clean_predicted, adversarial_predicted,
                              eps: float, path: str, class_names: Sequence[str] | None = None):
  """Saves one row per image: the clean image and its FGSM image of `eps`, each titled with its
  predicted class (red when it is not the true one, `labels`).

  `clean` and `adversarial` are (N, H, W, 1 or 3) in pixel units (0-255, floats allowed).
  """
  n = len(labels)
  fig = Figure(figsize=(2 * 1.6, 1.6 * n + 0.3), layout="constrained")
  axes = fig.subplots(n, 2, squeeze=False)
  columns = ((clean, clean_predicted, "clean"), (adversarial, adversarial_predicted,
                                                  f"FGSM eps={eps:g}"))
  for j, (images, predicted, column) in enumerate(columns):
    images = np.clip(np.asarray(images, np.float32) / 255, 0, 1)
    for i in range(n):
      ax = axes[i, j]
      ax.imshow(np.broadcast_to(images[i], images.shape[1:3] + (3,)), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      wrong = int(predicted[i]) != int(labels[i])
      title = f"pred: {class_name(int(predicted[i]), class_names)}"
      ax.set_title(f"{column}\n{title}" if i == 0 else title, fontsize=8,
                   color="red" if wrong else "black")
      if j == 0:
        ax.set_ylabel(f"true: {class_name(int(labels[i]), class_names)}", fontsize=8)
  fig.savefig(path, dpi=100)


def save_sweep(grid: Mapping[str, Sequence[float]], errors: Sequence[Sequence[float]], path: str,
               title: str = ""):
  """A sweep's test error against its swept fields: a line with ± std bars for one field, a
  heatmap (mean ± std in each cell) for two, one panel per field for more (each grid point a dot,
  the mean over the points of each value a line).

  `errors`: for each grid point (in `grid.points` order) the errors of its seeds; a point with
  none is left blank.
  """
  fields = list(grid)
  shape = tuple(len(values) for values in grid.values())
  means = np.array([np.mean(e) if len(e) else np.nan for e in errors]).reshape(shape)
  stds = np.array([np.std(e, ddof=1) if len(e) > 1 else np.nan for e in errors]).reshape(shape)
  if len(fields) == 2:
    fig = Figure(figsize=(1.4 * shape[1] + 3, 0.9 * shape[0] + 1.6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(means, cmap="viridis_r", aspect="auto")
    for (i, j), mean in np.ndenumerate(means):
      if not np.isnan(mean):
        text = f"{mean:.2f}" + ("" if np.isnan(stds[i, j]) else f"\n± {stds[i, j]:.2f}")
        ax.text(j, i, text, ha="center", va="center", color="w", fontsize=9)
    ax.set_xticks(range(shape[1]), [f"{v:g}" for v in grid[fields[1]]])
    ax.set_yticks(range(shape[0]), [f"{v:g}" for v in grid[fields[0]]])
    ax.set_xlabel(fields[1])
    ax.set_ylabel(fields[0])
    fig.colorbar(image, ax=ax, label="final test top-1 error % (mean over seeds)")
  else:
    fig = Figure(figsize=(4.2 * len(fields), 3.4), layout="constrained")
    for axis, (field, values) in enumerate(grid.items()):
      ax = fig.add_subplot(1, len(fields), axis + 1)
      x = np.asarray(values, float)
      if len(fields) == 1:
        ax.errorbar(x, means, yerr=np.nan_to_num(stds), marker="o", capsize=3)
      else:
        by_value = np.moveaxis(means, axis, 0).reshape(len(values), -1)
        for column in by_value.T:
          ax.plot(x, column, "o", color="0.6", markersize=3)
        ax.plot(x, np.nanmean(by_value, axis=1), "o-", label="mean over the other fields")
        ax.legend(fontsize=8)
      if x.min() > 0 and x.max() >= 10 * x.min():
        ax.set_xscale("log")
      ax.set_xticks(x, [f"{v:g}" for v in x])
      ax.xaxis.set_minor_locator(ticker.NullLocator())
      ax.set_xlabel(field)
      ax.set_ylabel("final test top-1 error %")
      ax.grid(alpha=0.3)
      _bound_error_axis(ax)
  fig.suptitle(title, fontsize=10)
  fig.savefig(path, dpi=100)
