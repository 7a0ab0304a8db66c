"""summaries.SummaryWriter: event files read back with TensorBoard's reader (no TensorFlow)."""

import io
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from tensorboard.backend.event_processing import event_accumulator

from ltpa_jax.rundir import summaries

REPO = pathlib.Path(__file__).resolve().parents[1]


def read_events(logdir):
  """{"scalars": {tag: [(step, value)]}, "images": {tag: [(step, PIL image)]},
  "text": {tag: [(step, text)]}} of the event files in `logdir`."""
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={
      event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0})
  acc.Reload()
  tags = acc.Tags()
  return {
      "scalars": {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]},
      "images": {t: [(e.step, Image.open(io.BytesIO(e.encoded_image_string)))
                     for e in acc.Images(t)] for t in tags["images"]},
      "text": {t: [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(t)]
               for t in tags["tensors"]},
  }


def test_scalars_text_and_images_read_back(tmp_path):
  rgb = np.zeros((4, 6, 3), np.uint8)
  rgb[0, 0] = (255, 0, 0)
  gray_batch = np.full((2, 5, 5, 1), 0.5, np.float32)
  with summaries.SummaryWriter(str(tmp_path)) as writer:
    writer.write_text("config", "model:\n  attention: true")
    writer.write_scalars(1, {"train/loss": np.float32(4.5), "test/top1_error": 90.0})
    writer.write_scalars(2, {"train/loss": 4.25})
    writer.write_images(2, {"rgb": rgb, "gray_batch": gray_batch})

  events = read_events(tmp_path)
  assert events["scalars"] == {"train/loss": [(1, 4.5), (2, 4.25)],
                               "test/top1_error": [(1, 90.0)]}
  assert events["text"] == {"config/text_summary": [(0, "```\nmodel:\n  attention: true\n```")]}
  (step, image), = events["images"]["rgb"]
  assert step == 2 and image.size == (6, 4)
  pixels = np.asarray(image.convert("RGB"))
  assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[1:].max() == 0
  (step, grid), = events["images"]["gray_batch"]
  assert step == 2 and grid.size == (10, 5)  # two 5x5 images side by side
  assert np.abs(np.asarray(grid.convert("L")).astype(int) - 127).max() <= 1


@pytest.mark.parametrize("image, match", [
    (np.zeros((4, 4), np.uint8), "HWC or NHWC"),
    (np.zeros((4, 4, 2), np.uint8), "1 or 3 channels"),
    (np.full((4, 4, 3), 2.0), r"\[0, 1\]"),
    (np.zeros((4, 4, 3), np.int32), "uint8 or float"),
])
def test_bad_images_are_refused(tmp_path, image, match):
  with summaries.SummaryWriter(str(tmp_path)) as writer:
    with pytest.raises(ValueError, match=match):
      writer.write_images(0, {"bad": image})


def test_a_resumed_writer_purges_the_interrupted_steps(tmp_path):
  with summaries.SummaryWriter(str(tmp_path)) as writer:
    for step in (1, 2, 3):
      writer.write_scalars(step, {"loss": step})
  with summaries.SummaryWriter(str(tmp_path), purge_step=3) as writer:  # resumed after step 2
    writer.write_scalars(3, {"loss": 30})
    writer.write_scalars(4, {"loss": 40})
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # even within one second
  assert read_events(tmp_path)["scalars"]["loss"] == [(1, 1), (2, 2), (3, 30), (4, 40)]


def test_writing_summaries_imports_neither_torch_nor_tensorflow(tmp_path):
  """Not even where they are installed (torch is, with the torch extra): a training process
  holds neither."""
  code = ("import sys; import numpy as np; from ltpa_jax.rundir import summaries; from ltpa_jax.training import loop as train; "
          f"w = summaries.SummaryWriter({str(tmp_path)!r}); w.write_scalars(1, {{'a': 1.0}}); "
          "w.write_images(1, {'b': np.zeros((2, 4, 4, 3), np.uint8)}); w.write_text('c', 'd'); "
          "w.close(); loaded = {m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow'}; "
          "assert not loaded, loaded")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
