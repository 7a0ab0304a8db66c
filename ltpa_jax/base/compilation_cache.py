"""The persistent XLA compilation cache: a restarted or resumed run loads its compiled programs.

Every command turns it on (`cli.run`, flag `--compilation_cache`) in DEFAULT_DIR:
$JAX_COMPILATION_CACHE_DIR when set, else ~/.cache/ltpa_jax/xla. Every program is cached, however
short its compile (JAX caches only those over 1 s by default). The cache is not pruned: delete
the folder to reclaim its space. `--compilation_cache=` (empty) turns it off.
"""

from __future__ import annotations

import collections
import contextlib
import os

import jax

DEFAULT_DIR = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
    os.path.expanduser("~"), ".cache", "ltpa_jax", "xla")
_REQUESTS = "/jax/compilation_cache/compile_requests_use_cache"
_HITS = "/jax/compilation_cache/cache_hits"


def use(directory: str) -> None:
  """Caches compiled programs in `directory` (made if absent); off when it is empty."""
  if directory:
    os.makedirs(directory, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", directory or None)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


@contextlib.contextmanager
def kept():
  """Restores, on leaving, the cache settings found on entering (a command called in-process
  leaves its caller's cache as it was)."""
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  before = {name: getattr(jax.config, name) for name in names}
  try:
    yield
  finally:
    for name, value in before.items():
      jax.config.update(name, value)


@contextlib.contextmanager
def counting():
  """Yields a Counter that counts, while open, the programs compiled through the cache
  ("requests") and those loaded from it ("hits")."""
  counts = collections.Counter()

  def listen(event: str, **_):
    if event in (_REQUESTS, _HITS):
      counts["requests" if event == _REQUESTS else "hits"] += 1

  jax.monitoring.register_event_listener(listen)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_listener(listen)


def describe(counts: collections.Counter) -> str:
  """" (3 of 4 programs from the compilation cache)", or "" when no program used the cache."""
  if not counts["requests"]:
    return ""
  return f" ({counts['hits']} of {counts['requests']} programs from the compilation cache)"
