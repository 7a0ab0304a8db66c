"""TensorBoard event files of scalars, text and images, written without TensorFlow or PyTorch.

The events are TensorBoard's own protocol buffers, framed as TFRecords here: tensorboardX imports
PyTorch, and TensorBoard's own event file writer TensorFlow, wherever they are installed.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any, Mapping

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.proto import tensor_pb2
from tensorboard.compat.proto import tensor_shape_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from ltpa_jax.base import png

IMAGES_PER_ROW = 8  # an NHWC batch is shown as one grid image


class SummaryWriter:
  """Writes one run's TensorBoard events into `logdir`; use as a context manager or `close()`.

  A resumed run passes `purge_step` (its first step): TensorBoard then hides the events at that
  step and later that the interrupted process wrote, instead of showing both.
  """

  def __init__(self, logdir: str, purge_step: int | None = None):
    os.makedirs(logdir, exist_ok=True)
    # The nanoseconds keep a writer started within the same second from reusing the file's name.
    name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
            f".{time.time_ns()}")
    self._file = open(os.path.join(logdir, name), "xb")  # pylint: disable=consider-using-with
    self._write(event_pb2.Event(file_version="brain.Event:2"))
    if purge_step is not None:
      self._write(event_pb2.Event(step=int(purge_step), session_log=event_pb2.SessionLog(
          status=event_pb2.SessionLog.START)))

  def _write(self, event: event_pb2.Event):
    """Appends `event`, stamped now, as one TFRecord."""
    event.wall_time = time.time()
    data = event.SerializeToString()
    header = struct.pack("<Q", len(data))
    self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data
                     + struct.pack("<I", masked_crc32c(data)))

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    """Writes each value (a number or a 0-d array) under its name at `step`."""
    values = [summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
              for tag, value in scalars.items()]
    self._write(event_pb2.Event(step=int(step), summary=summary_pb2.Summary(value=values)))

  def write_text(self, tag: str, text: str, step: int = 0):
    """Writes `text` (e.g. a config) as a code block, so TensorBoard keeps its layout."""
    tensor = tensor_pb2.TensorProto(
        dtype="DT_STRING", string_val=[f"```\n{text}\n```".encode()],
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
    value = summary_pb2.Summary.Value(tag=f"{tag}/text_summary", metadata=metadata,
                                      tensor=tensor)
    self._write(event_pb2.Event(step=int(step), summary=summary_pb2.Summary(value=[value])))

  def write_images(self, step: int, images: Mapping[str, Any]):
    """Writes each image: HWC, or NHWC shown as a grid of 8 per row; C is 1 or 3.

    uint8 pixels are written as they are, float pixels must lie in [0, 1].
    """
    values = [summary_pb2.Summary.Value(tag=tag, image=_png(_grid(_checked_image(tag, image))))
              for tag, image in images.items()]
    self._write(event_pb2.Event(step=int(step), summary=summary_pb2.Summary(value=values)))

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()

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
  """`image` as uint8 pixels, after checking its shape and pixel range."""
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
  return np.round(image * 255).astype(np.uint8)


def _grid(images: np.ndarray) -> np.ndarray:
  """An HWC image as it is; NHWC images as one HWC image, IMAGES_PER_ROW per row."""
  if images.ndim == 3:
    return images
  n, h, w, c = images.shape
  columns = min(n, IMAGES_PER_ROW)
  rows = -(-n // columns)
  cells = np.zeros((rows * columns, h, w, c), np.uint8)
  cells[:n] = images
  return cells.reshape(rows, columns, h, w, c).swapaxes(1, 2).reshape(rows * h, columns * w, c)


def _png(image: np.ndarray) -> summary_pb2.Summary.Image:
  """A uint8 HWC image as a PNG image summary."""
  height, width, channels = image.shape
  return summary_pb2.Summary.Image(height=height, width=width, colorspace=channels,
                                   encoded_image_string=png.encode(image))
