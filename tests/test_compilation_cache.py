"""The persistent compilation cache: what the commands report of it."""

import collections

import jax
import pytest
import jax.numpy as jnp

from ltpa_jax.base import compilation_cache


def test_a_program_compiled_again_is_counted_as_loaded_from_the_cache():
  """The session's cache (conftest) is on: a new program is compiled and written, then, with
  JAX's in-memory caches cleared, loaded."""
  program, x = jax.jit(lambda x: jnp.tanh(x) * 7.0), jnp.zeros((13, 29))
  with compilation_cache.counting() as first:
    program.lower(x).compile()
  jax.clear_caches()
  with compilation_cache.counting() as second:
    program.lower(x).compile()
  assert (first["requests"], first["hits"]) == (1, 0)
  assert (second["requests"], second["hits"]) == (1, 1)
  assert compilation_cache.describe(second) == " (1 of 1 programs from the compilation cache)"
  assert compilation_cache.describe(collections.Counter()) == ""  # the cache off: no requests


def test_a_command_called_in_process_keeps_its_callers_cache():
  """A command sets its own cache (--compilation_cache, default in the user's home); called from
  Python (a test), it leaves the caller's session cache as it was."""
  from ltpa_jax import report  # pylint: disable=import-outside-toplevel
  before = jax.config.jax_compilation_cache_dir
  with pytest.raises(SystemExit):
    report.main([])  # sets the default cache, then finds no run
  assert jax.config.jax_compilation_cache_dir == before
