"""On-device input: per-example random crop with zero padding, horizontal flip, normalisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

PAD = 4


def pad_to_32(images):
  """Zero-pads smaller images (e.g. 28x28 Fashion-MNIST) symmetrically to 32x32."""
  h, w = images.shape[-3:-1]
  if (h, w) == (32, 32):
    return images
  if h > 32 or w > 32:
    raise ValueError(f"images must be at most 32x32, got {h}x{w}")
  top, left = (32 - h) // 2, (32 - w) // 2
  return jnp.pad(images, ((0, 0), (top, 32 - h - top), (left, 32 - w - left), (0, 0)))


def random_crop_flip(rng, images):
  """Per example: zero-pad by 4, take a random window of the original size, flip with p=0.5.

  `images` is uint8 (N, H, W, C); the result has the same shape and dtype.
  """
  n, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
  crop_rng, flip_rng = jax.random.split(rng)
  offsets = jax.random.randint(crop_rng, (n, 2), 0, 2 * PAD + 1)
  flips = jax.random.bernoulli(flip_rng, 0.5, (n,))

  def one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(one)(padded, offsets, flips)


def normalise(images, mean, std, dtype=jnp.float32):
  """uint8 images -> (x / 255 - mean) / std, per channel, in `dtype` (float64 for a float64
  model: in float32, programs that round differently would feed it different inputs)."""
  mean = jnp.asarray(mean, dtype)
  std = jnp.asarray(std, dtype)
  return (images.astype(dtype) / 255.0 - mean) / std
