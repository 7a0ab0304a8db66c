"""Augmentation: a crop is a shifted window of the zero-padded image; a flip mirrors it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ltpa_jax.data import input_pipeline


def images(n=64, h=32, w=32, c=3):
  return jax.random.randint(jax.random.key(0), (n, h, w, c), 1, 256).astype(jnp.uint8)


def test_each_output_is_a_window_of_the_padded_image_possibly_mirrored():
  x = np.asarray(images())
  out = np.asarray(jax.jit(input_pipeline.random_crop_flip)(jax.random.key(3), x))
  assert out.shape == x.shape and out.dtype == np.uint8
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  seen_offsets, flips = set(), 0
  for image, result in zip(padded, out):
    matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
               if np.array_equal(result, (lambda w: w[:, ::-1] if flip else w)(
                   image[dy:dy + 32, dx:dx + 32]))]
    assert matches, "output is not a (mirrored) window of the padded image"
    seen_offsets.add(matches[0][:2])
    flips += matches[0][2]
  assert len(seen_offsets) > 20  # offsets vary over the 9x9 possibilities
  assert 16 <= flips <= 48  # about half are mirrored


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
