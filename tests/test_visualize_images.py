"""visualize --images: a user's image files (any format, size, mode) through a run's model, with
their top-3 classes and attention maps; a file that is not an image is named and left out."""

import re

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from configs import tiny
from ltpa_jax.rundir import checkpoints
from ltpa_jax.data import datasets
from ltpa_jax.base import errors
from ltpa_jax.training import experiment
from ltpa_jax.data import image_files
from ltpa_jax.training import loop as train
from ltpa_jax import visualize
from ltpa_jax.analysis import attention
from ltpa_jax.rundir import workdir as workdir_lib
from tests import test_cli_errors

WHITE = (255, 255, 255, 255)


def tiny_config(data_dir):
  """One epoch of the tiny attention model on the fake Fashion-MNIST (28x28, grayscale)."""
  config = tiny.get_config()
  config.update(test_cli_errors.FIELDS, data_dir=data_dir, num_epochs=1, lr_boundaries_epochs=(),
                batch_size=10, eval_batch_size=10)  # one batch shape: one compilation
  return config


def write_images(folder):
  """A JPEG (RGB, 80x50), a PNG (RGBA, 23x17, half transparent), a text file, a missing path."""
  rng = np.random.default_rng(0)
  paths = [str(folder / name) for name in ("photo1.jpg", "notes.txt", "photo2.png", "gone.png")]
  Image.fromarray(rng.integers(0, 256, (50, 80, 3), np.uint8)).save(paths[0])
  (folder / "notes.txt").write_text("not an image\n")
  Image.fromarray(rng.integers(0, 256, (17, 23, 4), np.uint8), "RGBA").save(paths[2])
  return paths


def direct_probabilities(config, workdir, paths):
  """Softmax of the logits of the model applied by hand: each image over white, grayscale,
  resized to 28x28 (bicubic), zero-padded to 32x32, normalised."""
  built = experiment.build(config, splits=())
  model, info = built.model, built.dataset.info
  with checkpoints.CheckpointManager(str(workdir)) as ckpt:
    state = ckpt.restore(None, built.abstract_checkpoint(), jax.random.key(0))[0]["state"]
  images = []
  for path in paths:
    with Image.open(path) as image:
      rgba = Image.alpha_composite(Image.new("RGBA", image.size, WHITE), image.convert("RGBA"))
      images.append(np.asarray(rgba.convert("L").resize((28, 28), Image.Resampling.BICUBIC)))
  x = np.pad(np.stack(images)[..., None], ((0, 0), (2, 2), (2, 2), (0, 0))) / 255.0
  logits, _ = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                          (x - info.mean) / np.asarray(info.std), train=False)
  return np.asarray(jax.nn.softmax(logits))


@pytest.fixture
def fast_random_init():
  """Non-partitionable threefry: XLA:CPU compiles the random init 3x faster (as the commands run
  by test_cli_errors)."""
  with jax.threefry_partitionable(False):
    yield


@pytest.mark.slow
def test_own_images_are_drawn_with_their_top3_and_bad_files_named(prepared_fake_data, tmp_path,
                                                                   fast_random_init, capsys,
                                                                   monkeypatch):
  config = tiny_config(prepared_fake_data)
  workdir = tmp_path / "run"
  opened, data_source = [], tfds.data_source
  with monkeypatch.context() as patch:
    patch.setattr(tfds, "data_source", lambda *a, **k: opened.append(a) or data_source(*a, **k))
    train.train_and_evaluate(config, str(workdir))
  assert len(opened) == 1  # the dataset is read once: splits, label and class names
  assert (workdir / "attention_test.png").is_file()  # with true and predicted classes
  paths = write_images(tmp_path)
  out = tmp_path / "mine.png"
  result = test_cli_errors.run("ltpa_jax.visualize", f"--workdir={workdir}", f"--out={out}",
                               "--images", *paths)
  assert result.returncode == 0, result.stderr
  assert result.stderr.splitlines() == [
      f"error: {paths[1]}: not an image Pillow reads (cannot identify image file '{paths[1]}'). "
      "Drawing the other images.",
      f"error: {paths[3]}: no such file. Drawing the other images."]
  with Image.open(out) as png:
    assert png.format == "PNG" and png.height > 2 * 100
  wrote, *lines = result.stdout.splitlines()
  assert wrote == f"Wrote {out}: attention of 2 images after step 3."  # 30 images / 10 a step
  good = [paths[0], paths[2]]
  expected = direct_probabilities(config, workdir, good)
  names = datasets.load(config.dataset, prepared_fake_data, splits=()).class_names
  for path, line, row in zip(good, lines, expected, strict=True):
    shown = re.fullmatch(rf"{re.escape(path)}: (.+) ([\d.]+)%, (.+) ([\d.]+)%, (.+) ([\d.]+)%",
                         line)
    assert shown, line
    classes = [names.index(c) for c in shown.groups()[::2]]
    percents = [float(p) for p in shown.groups()[1::2]]
    assert percents == sorted(percents, reverse=True) and sum(percents) <= 100
    assert classes == list(np.argsort(-row, kind="stable")[:3])
    np.testing.assert_allclose(percents, 100 * row[classes], atol=0.006)
  images, read, problems = image_files.read(paths, (28, 28, 1))  # in process: exact
  probabilities, maps, step = attention.predict(
      experiment.build(config, splits=()), str(workdir),
      np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))))
  assert read == good and len(problems) == 2 and step == 3
  np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-7)
  assert {m.shape for m in maps.values()} <= {(2, 32, 32), (2, 16, 16), (2, 8, 8)}
  capsys.readouterr()
  elsewhere = str(tmp_path / "no_data")  # the run's files without its dataset: classes by number
  shown = attention.render_images(str(workdir), str(tmp_path / "numbers.png"), good[:1],
                                  data_dir=elsewhere)
  number = r"\d [\d.]+%"  # a class number and its probability
  assert re.fullmatch(rf"Wrote .*: attention of 1 image after step 3\.\n{re.escape(good[0])}: "
                      rf"{number}, {number}, {number}", shown)
  assert capsys.readouterr().err == (f"note: 'fashion_mnist' is not prepared in data_dir "
                                     f"{elsewhere}: classes are shown by number (give --data_dir "
                                     "for their names).\n")
  assert not (tmp_path / "no_data").exists()  # nothing prepared there


def test_no_readable_image_is_a_user_error_naming_each_file(tmp_path, capsys):
  config = tiny_config(str(tmp_path / "tfds"))
  workdir = tmp_path / "run"
  workdir_lib.check_same_config(str(workdir), config)  # config.json: no checkpoint needed
  paths = write_images(tmp_path)
  with pytest.raises(errors.UserError) as error:
    attention.render_images(str(workdir), str(tmp_path / "out.png"), [paths[1], paths[3]])
  assert str(error.value).splitlines() == [  # one message: no other image to draw
      "Nothing drawn: no file given to --images is an image Pillow reads:",
      f"  {paths[1]}: not an image Pillow reads (cannot identify image file '{paths[1]}').",
      f"  {paths[3]}: no such file."]
  assert capsys.readouterr().err == ""
  assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("mode, shape", [("RGB", (40, 90, 3)), ("RGBA", (40, 90, 4)),
                                         ("L", (40, 90)), ("P", (40, 90)), ("1", (40, 90))])
def test_any_mode_and_size_becomes_the_model_input(mode, shape, tmp_path):
  path = str(tmp_path / "image.png")
  Image.fromarray(np.zeros(shape, np.uint8)).convert(mode).save(path)
  for image_shape in ((32, 32, 3), (28, 28, 1)):
    images, read, problems = image_files.read([path], image_shape)
    assert images.shape == (1, *image_shape) and images.dtype == np.uint8
    assert read == [path] and problems == []


def test_crop_keeps_the_centre_and_stretching_keeps_everything(tmp_path):
  """A wide image, red on its outer thirds and blue in the middle."""
  image = np.zeros((30, 90, 3), np.uint8)
  image[:, :30, 0] = image[:, 60:, 0] = 255
  image[:, 30:60, 2] = 255
  path = str(tmp_path / "wide.png")
  Image.fromarray(image).save(path)
  stretched = image_files.read([path], (32, 32, 3))[0][0]
  cropped = image_files.read([path], (32, 32, 3), crop=True)[0][0]
  assert stretched[16, 2, 0] == 255 and stretched[16, 16, 2] == 255  # red left, blue centre
  assert (cropped[..., 2] > 240).all() and (cropped[..., 0] < 15).all()  # all blue (bicubic)


@pytest.mark.parametrize("args, message", [
    (("--images", "a.png", "--indices", "0"), "Give --images or --indices, not both."),
    (("a.png",), "Unexpected arguments ['a.png']: give image files after --images."),
])
def test_image_flag_mistakes_are_one_line(args, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_:
    visualize.main([f"--workdir={tmp_path}", *args])
  assert (exit_.value.code, capsys.readouterr().err) == (2, f"error: {message}\n")
