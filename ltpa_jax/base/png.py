"""PNG bytes of uint8 images, encoded with PIL."""

import io

import numpy as np
from PIL import Image


def encode(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 (H, W, C) image, C = 1 (grayscale) or 3."""
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="png")
  return buffer.getvalue()
