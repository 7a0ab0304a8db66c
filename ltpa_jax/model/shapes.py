"""Every module call of a model on one image, traced abstractly (nothing is computed)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Call:
  """One `__call__` of a module: the module, its positional arguments' shapes, its output's
  shape (None where it returns a tuple)."""
  module: nn.Module
  in_shapes: tuple[tuple[int, ...], ...]
  out_shape: tuple[int, ...] | None


def module_calls(model: nn.Module, image_shape=(32, 32, 3)) -> list[Call]:
  """The `__call__`s of `model` and its submodules on a batch of one image, in call order."""
  calls = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == "__call__":
      calls.append(Call(context.module, tuple(a.shape for a in args if hasattr(a, "shape")),
                        out.shape if hasattr(out, "shape") else None))
    return out

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape)),
                                      train=False))
  return calls
