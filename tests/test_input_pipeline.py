"""Augmentation: a crop is a shifted window of the zero-padded image; a flip mirrors it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltpa_jax.data import input_pipeline
from tests import sampling


def images(n=64, h=32, w=32, c=3):
  return jax.random.randint(jax.random.key(0), (n, h, w, c), 1, 256).astype(jnp.uint8)


def test_each_output_is_a_window_of_the_padded_image_possibly_mirrored():
  x = np.asarray(images())
  out = np.asarray(jax.jit(input_pipeline.random_crop_flip)(jax.random.key(3), x))
  assert out.shape == x.shape and out.dtype == np.uint8
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  for image, result in zip(padded, out):
    assert any(np.array_equal(result, (lambda w: w[:, ::-1] if flip else w)(
        image[dy:dy + 32, dx:dx + 32])) for dy in range(9) for dx in range(9)
               for flip in (False, True)), "output is not a (mirrored) window of the padded image"


def test_offsets_and_flips_have_their_exact_distribution():
  """Offsets uniform on 0..8 on each axis, flips with p = 1/2, over 16,384 draws.

  The draws do not depend on the image size, so 5x5 images (the smallest whose every window
  holds a pixel of the image) with distinct pixels tell each output's (dy, dx, flip). Each count
  is held to its binomial bounds at a false-alarm rate of 1e-6 (`sampling`): offsets 0..7, or
  flips with p = 0.4, fall outside them.
  """
  n, size = 16384, 5
  image = np.arange(1, size * size + 1, dtype=np.uint8).reshape(size, size, 1)
  padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
  windows = {(lambda w: w[:, ::-1] if flip else w)(padded[dy:dy + size, dx:dx + size]).tobytes():
             (dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (0, 1)}
  assert len(windows) == 9 * 9 * 2  # every window tells its draw
  out = jax.jit(input_pipeline.random_crop_flip)(jax.random.key(7), np.tile(image, (n, 1, 1, 1)))
  draws = np.array([windows[o.tobytes()] for o in np.asarray(out)])
  low, high = sampling.binomial_bounds(n, 1 / 9)
  for axis in (0, 1):
    counts = np.bincount(draws[:, axis], minlength=9)
    assert len(counts) == 9 and (low <= counts).all() and (counts <= high).all(), \
        f"axis {axis}: counts of offsets 0..8 {counts} outside [{low}, {high}]"
  low, high = sampling.binomial_bounds(n, 1 / 2)
  flips = draws[:, 2].sum()
  assert low <= flips <= high, f"{flips} flips of {n} outside [{low}, {high}]"


def test_padding_is_zero_and_the_result_is_deterministic_in_the_key():
  x = images(n=256)
  a = input_pipeline.random_crop_flip(jax.random.key(1), x)
  b = input_pipeline.random_crop_flip(jax.random.key(1), x)
  c = input_pipeline.random_crop_flip(jax.random.key(2), x)
  assert np.array_equal(a, b) and not np.array_equal(a, c)
  assert (np.asarray(a) == 0).any()  # inputs are >= 1, so zeros come from the padding


def test_normalise_uses_the_per_channel_statistics():
  x = jnp.full((1, 2, 2, 3), 255, jnp.uint8)
  out = input_pipeline.normalise(x, (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
  np.testing.assert_allclose(out[0, 0, 0], [1.0, 3.0, 0.5])


def test_pad_to_32_centres_28x28_images():
  x = jnp.ones((2, 28, 28, 1), jnp.uint8)
  out = np.asarray(input_pipeline.pad_to_32(x))
  assert out.shape == (2, 32, 32, 1)
  assert out[:, 2:30, 2:30].all() and out.sum() == 2 * 28 * 28
  with pytest.raises(ValueError, match="at most 32x32"):
    input_pipeline.pad_to_32(jnp.ones((1, 40, 40, 3), jnp.uint8))
