"""JAX's persistent compilation cache, on by default: a rerun or a resume of
the same config loads its compiled programs from disk instead of compiling
them again (tiny-llm: ~45 s of compilation before the first step, a few
seconds from the cache).

Where: $TINYJAX_COMPILATION_CACHE if set ('' or 'off': tinyjax does not
turn a cache on), else JAX's own setting if one was made
(JAX_COMPILATION_CACHE_DIR or jax.config's jax_compilation_cache_dir; then
used exactly as JAX is configured), else ~/.cache/tinyjax/jax (under
$XDG_CACHE_HOME if set). Entries are keyed by the program, the jax/jaxlib
version, the compiler options and the devices, so a stale entry is never
used; delete the folder to reclaim the space.

Several processes may share tinyjax's folder (a sweep's jobs, two runs at
once): the size cap below turns on JAX's file lock around every read and
write, so no process reads an entry another is still writing; the least
recently used entries are deleted beyond the cap. Do not point
TINYJAX_COMPILATION_CACHE at a folder that JAX programs without that cap
also write (their entries lack the access times the eviction reads).
"""

from __future__ import annotations

import os

MAX_BYTES = 4 << 30  # the cache's size cap (LRU eviction beyond it); also enables the lock
# Programs that compile faster than this are not written (JAX's default: 1 s,
# which would leave init and evaluation, compiled unoptimised, to compile again).
MIN_COMPILE_SECS = 0.2


def default_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'tinyjax', 'jax')


def enable() -> str | None:
  """Turns the cache on (before anything is compiled); returns its folder, or
  None when turned off. Idempotent."""
  import jax
  env = os.environ.get('TINYJAX_COMPILATION_CACHE')
  if env is not None and env.strip().lower() in ('', 'off', '0', 'false', 'none'):
    return None
  if env is None and jax.config.jax_compilation_cache_dir:
    # JAX's own setting (JAX_COMPILATION_CACHE_DIR; the tests set one) is left
    # exactly as it is: processes that do not evict may share that folder, and
    # JAX's eviction expects every entry to have its access-time file.
    return jax.config.jax_compilation_cache_dir
  path = env or default_dir()
  try:
    import filelock  # noqa: F401  (JAX's lock; without it, no shared cache)
  except ImportError:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:  # a read-only home: compile as before
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_compilation_cache_max_size', MAX_BYTES)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECS)
  return path
