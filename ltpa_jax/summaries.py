"""TensorBoard event files without TensorFlow: scalars, text and images through tensorboardX."""

from __future__ import annotations

import time
from typing import Any, Mapping

import sys

import numpy as np


def _import_tensorboardx_without_torch():
  """tensorboardX imports torch whenever it is installed; keep PyTorch out of training runs."""
  if "torch" in sys.modules:  # already loaded by the caller: nothing to keep out
    import tensorboardX  # pylint: disable=import-outside-toplevel
    return tensorboardX
  sys.modules["torch"] = None  # makes `import torch` fail inside tensorboardX
  try:
    import tensorboardX  # pylint: disable=import-outside-toplevel
  finally:
    del sys.modules["torch"]
  return tensorboardX


tensorboardX = _import_tensorboardx_without_torch()


class SummaryWriter:
  """Writes one run's TensorBoard events into `logdir`; use as a context manager or `close()`.

  A resumed run passes `purge_step` (its first step): TensorBoard then hides the events at that
  step and later that the interrupted process wrote, instead of showing both.
  """

  def __init__(self, logdir: str, purge_step: int | None = None):
    # tensorboardX names event files by the second and opens them with "wb": the suffix keeps a
    # writer started within the same second from erasing the previous one's file.
    self._writer = tensorboardX.SummaryWriter(logdir, purge_step=purge_step,
                                              filename_suffix=f".{time.time_ns()}")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    """Writes each value (a number or a 0-d array) under its name at `step`."""
    for tag, value in scalars.items():
      self._writer.add_scalar(tag, float(value), int(step))

  def write_text(self, tag: str, text: str, step: int = 0):
    """Writes `text` (e.g. a config) as a code block, so TensorBoard keeps its layout."""
    self._writer.add_text(tag, f"```\n{text}\n```", int(step))

  def write_images(self, step: int, images: Mapping[str, Any]):
    """Writes each image: HWC, or NHWC shown as a grid of 8 per row; C is 1 or 3.

    uint8 pixels are written as they are, float pixels must lie in [0, 1].
    """
    for tag, image in images.items():
      image = _checked_image(tag, image)
      if image.ndim == 3:
        self._writer.add_image(tag, image, int(step), dataformats="HWC")
      else:
        self._writer.add_images(tag, image, int(step), dataformats="NHWC")

  def flush(self):
    self._writer.flush()

  def close(self):
    self._writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


class NoSummaries:
  """A SummaryWriter that writes nothing: the writer of every process but the first."""

  def __getattr__(self, name):
    return lambda *args, **kwargs: None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    pass


def _checked_image(tag: str, image) -> np.ndarray:
  """`image` as a numpy array, after checking its shape and pixel range."""
  image = np.asarray(image)
  if image.ndim not in (3, 4) or image.shape[-1] not in (1, 3):
    raise ValueError(f"Image {tag!r}: expected HWC or NHWC with 1 or 3 channels, got shape "
                     f"{image.shape}.")
  if image.dtype == np.uint8:
    return image
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError(f"Image {tag!r}: expected uint8 or float pixels, got {image.dtype}.")
  if image.size and not 0 <= image.min() <= image.max() <= 1:
    raise ValueError(f"Image {tag!r}: float pixels must lie in [0, 1], got "
                     f"[{image.min()}, {image.max()}]; convert to uint8 or rescale.")
  return image.astype(np.float32)
