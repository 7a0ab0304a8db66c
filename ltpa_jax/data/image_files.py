"""A user's image files (any format, size and mode Pillow reads) as a model's uint8 input."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PIL import ImageOps

RESAMPLING = Image.Resampling.BICUBIC  # antialiased when shrinking
BACKGROUND = (255, 255, 255)  # under transparent pixels


def read(paths, image_shape, crop: bool = False):
  """The images at `paths` as uint8 (N, H, W, C) of `image_shape` (as the dataset stores them).

  Each image is converted to L (C = 1) or RGB (C = 3), transparent pixels over white, then
  resized to H x W (stretched) or, with `crop`, centre-cropped to the aspect of H x W first.
  Returns (images or None, the paths read, one line per path that could not be read).
  """
  images, read_paths, problems = [], [], []
  for path in paths:
    try:
      images.append(_read_one(path, image_shape, crop))
      read_paths.append(path)
    except FileNotFoundError:
      problems.append(f"{path}: no such file.")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
      why = " ".join(str(e).split())
      problems.append(f"{path}: not an image Pillow reads ({why}).")
  return (np.stack(images) if images else None), read_paths, problems


def _read_one(path: str, image_shape, crop: bool) -> np.ndarray:
  """One image as uint8 (H, W, C) of `image_shape`."""
  height, width, channels = image_shape
  with Image.open(path) as image:
    image.load()
    image = ImageOps.exif_transpose(image)  # a photo as its camera meant it upright
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
      rgba = image.convert("RGBA")
      image = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
      image.alpha_composite(rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    if crop:
      image = ImageOps.fit(image, (width, height), RESAMPLING)
    else:
      image = image.resize((width, height), RESAMPLING)
  return np.asarray(image, np.uint8).reshape(height, width, channels)
