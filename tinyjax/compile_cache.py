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
# which would leave init, compiled unoptimised, to compile again).
MIN_COMPILE_SECS = 0.2


def default_dir() -> str:
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'tinyjax', 'jax')


def enable() -> str | None:
  """Turns the cache on (before anything is compiled); returns its folder, or
  None when turned off. Idempotent."""
  import jax
  env = os.environ.get('TINYJAX_COMPILATION_CACHE')
  _FOLDER[:] = [None]
  if env is not None and env.strip().lower() in ('', 'off', '0', 'false', 'none'):
    return None
  if env is None and jax.config.jax_compilation_cache_dir:
    # JAX's own setting (JAX_COMPILATION_CACHE_DIR; the tests set one) is left
    # exactly as it is: processes that do not evict may share that folder, and
    # JAX's eviction expects every entry to have its access-time file.
    _FOLDER[:] = [jax.config.jax_compilation_cache_dir]
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
  _FOLDER[:] = [path]
  return path


# ------------------------------------------------- traced programs, saved ---
# The compiled-program cache above still leaves a rerun tracing and lowering
# every program before JAX can look it up (tiny-llm's chunk: ~3.5 s of CPU,
# its init ~0.5 s more). `Saved` keeps the traced and lowered
# program too (jax.export, next to the compiled ones): a rerun reads it and
# lowers a call to it (~0.3 s), whose compiled form the cache above holds.
PROGRAMS_DIR = 'tinyjax-programs'  # under the cache folder (JAX's eviction skips folders)
MAX_PROGRAMS = 256  # files kept (the oldest deleted beyond)
_FOLDER: list = []  # the folder enable() turned on, if any


def programs_dir() -> str | None:
  """Where Saved keeps traced programs: a folder in the compilation cache that
  enable() turned on; None (no saving) when the cache is off, also when JAX's
  cache is switched off after enable() (tinyjax.bench's cold timings)."""
  import jax
  if not (_FOLDER and _FOLDER[0]) or not jax.config.jax_enable_compilation_cache:
    return None
  return os.path.join(_FOLDER[0], PROGRAMS_DIR)


def _digest_files(h, paths):
  for p in paths:
    h.update(p.encode())
    try:
      with open(p, 'rb') as f:
        h.update(f.read())
    except OSError:  # a module whose file is gone: its name stands for it
      pass


_DIGESTS: dict = {}


def code_digest(modules=()) -> str | None:
  """sha256 of what a traced program is made of besides its config and data:
  tinyjax's source, the source of every loaded module outside the Python
  environment (the user's code: extension files, a local package, notebooks'
  helpers), the modules named in `modules` (a config's 'package.module:attr'
  specs, wherever installed) with their packages' loaded submodules, and the
  versions of the libraries that trace it. None if one of `modules` has no
  source file (e.g. '__main__' of a notebook): its program is then not saved."""
  import sys
  prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
  env = tuple({q + os.sep for p in prefixes for q in (p, os.path.realpath(p))})
  named = {m.split('.')[0] for m in modules}
  files = set()
  for name, m in list(sys.modules.items()):
    f = getattr(m, '__file__', None)
    if name in modules and not f:
      return None
    if not f or not f.endswith('.py'):
      continue
    if (name.split('.')[0] in named or name.startswith('tinyjax')
        or not (f.startswith(env) or os.path.realpath(f).startswith(env))):
      files.add(f)
  root = os.path.dirname(os.path.abspath(__file__))
  package = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith('.py')]
  files = sorted(files | set(package))
  key = tuple((f, _stamp(f)) for f in files)  # a file edited in this process: hashed again
  if key not in _DIGESTS:
    import hashlib
    import flax
    import jax
    import jaxlib
    import numpy as np
    import optax
    h = hashlib.sha256(' '.join(
        [jax.__version__, jaxlib.__version__, flax.__version__, optax.__version__,
         np.__version__]).encode())
    _digest_files(h, files)
    _DIGESTS[key] = h.hexdigest()
  return _DIGESTS[key]


def _stamp(path):
  try:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size
  except OSError:
    return None


class Saved:
  """jax.jit(fn, **jit_kwargs), whose traced and lowered program is saved on disk and read
  back by a later process instead of tracing fn again.

  A saved program is keyed by `key()` (what the caller's program depends on:
  its config, task data, ...), code_digest() and the arguments' shapes,
  dtypes and device, so a stale one is never used. Only calls with concrete
  arrays on one device of one process use it; anything else (tracers, as in
  jax.eval_shape, or arguments sharded over several devices) calls the plain
  jitted function, as does a program that jax.export cannot serialize.
  Python ints in the arguments are passed as int32 arrays.
  """

  def __init__(self, name: str, fn, key, folder: str, modules=(), **jit_kwargs):
    import jax
    self.name, self.fn, self.key, self.folder = name, fn, key, folder
    self.code = lambda: code_digest(modules)
    self.jit_kwargs = jit_kwargs  # (compiler options apply to the outermost jit only)
    self.jitted = jax.jit(fn, **jit_kwargs)
    self._loaded = {}  # signature -> (jit of the exported call, output treedef) or None

  def __call__(self, *args):
    use = self._program(args)
    if use == 'traced':  # inside a trace (jax.eval_shape): inline, as a nested jit would be
      return self.fn(*args)
    if use is None:
      return self.jitted(*args)
    call, out_tree, leaves = use
    import jax
    return jax.tree.unflatten(out_tree, call(*leaves))

  def lower(self, *args):
    use = self._program(args)
    if use is None or use == 'traced':
      return self.jitted.lower(*args)
    call, _, leaves = use
    return call.lower(*leaves)

  def _program(self, args):
    import jax
    import numpy as np
    leaves, in_tree = jax.tree.flatten(args)
    devices = set()
    for i, x in enumerate(leaves):
      if isinstance(x, jax.core.Tracer):
        return 'traced'
      if isinstance(x, (bool, int)) and not isinstance(x, np.generic):
        leaves[i] = np.int32(x)
      elif isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):  # (shapes: lower() ahead of a call)
        devices |= x.sharding.device_set if x.sharding is not None else set()
    if len(devices) > 1 or jax.process_count() > 1:
      return None
    device = next(iter(devices), jax.devices()[0])
    signature = (in_tree, device.id, tuple(
        (tuple(x.shape), np.dtype(x.dtype).str, bool(getattr(x, 'weak_type', False)))
        if isinstance(x, jax.ShapeDtypeStruct) else
        (np.shape(x), np.result_type(x).str, bool(getattr(x, 'weak_type', False)))
        for x in leaves))
    if signature not in self._loaded:  # the code is hashed once per signature, not per call
      self._loaded[signature] = (None if self.code() is None else
                                 self._load_or_export(signature, leaves, in_tree, device))
    found = self._loaded[signature]
    return None if found is None else (*found, leaves)

  def _path(self, signature, device):
    import hashlib
    h = hashlib.sha256()
    for part in (self.name, self.key(), self.code(), str(signature[0]),
                 str(signature[2]), device.platform, device.device_kind):
      h.update(part.encode() + b'\0')
    return os.path.join(self.folder, f'{self.name}-{h.hexdigest()[:40]}.jaxexport')

  def _load_or_export(self, signature, leaves, in_tree, device):
    import pickle
    import jax
    path = self._path(signature, device)
    try:
      with open(path, 'rb') as f:
        blob, out_tree = pickle.load(f)
      exported = jax.export.deserialize(blob)
    except (OSError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            pickle.UnpicklingError):
      box = {}

      def flat(*xs):  # exported functions take and return flat lists of arrays
        out = self.fn(*jax.tree.unflatten(in_tree, xs))
        flat_out, box['out_tree'] = jax.tree.flatten(out)
        return flat_out
      flat.__name__ = getattr(self.fn, '__name__', self.name)
      try:
        exported = jax.export.export(jax.jit(flat))(*leaves)
        blob = exported.serialize()
      except Exception:  # noqa: BLE001  (not exportable: the plain jit, which raises a real error)
        return None
      out_tree = box['out_tree']
      self._write(path, pickle.dumps((blob, out_tree)))
    call = lambda *xs: exported.call(*xs)
    call.__name__ = getattr(self.fn, '__name__', self.name)  # JAX's cache files: jit_<name>-...
    return jax.jit(call, **self.jit_kwargs), out_tree

  def _write(self, path, data):  # (a read-only or full folder: the program still runs)
    write_file(path, lambda f: f.write(data), keep=MAX_PROGRAMS)


def write_file(path: str, write, keep: int = 0) -> None:
  """Writes `path` atomically (write(f) into a temporary file in its folder,
  then os.replace: a reader never sees half a file). keep > 0: then deletes
  the least recently modified files of the folder with path's extension
  beyond `keep`, and temporary files an hour old (a writer killed midway).
  Never raises: a read-only or full folder leaves nothing written. Used for
  the saved programs, the notes below and tinyjax.tasks.cache's entries."""
  import time
  folder, ext = os.path.dirname(path), os.path.splitext(path)[1]
  tmp = f'{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp'  # (hosts sharing the folder)
  try:
    os.makedirs(folder, exist_ok=True)
    with open(tmp, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  except OSError:
    try:
      os.remove(tmp)
    except OSError:
      pass
    return
  if not keep:
    return
  entries = []
  for name in os.listdir(folder):
    p = os.path.join(folder, name)
    try:
      entries.append((os.path.getmtime(p), p))
    except OSError:  # deleted by another process meanwhile
      continue
  stale = [p for t, p in entries if p.endswith('.tmp') and t < time.time() - 3600]
  kept = sorted(e for e in entries if e[1].endswith(ext))
  for p in stale + [p for _, p in kept[:-keep]]:
    try:
      os.remove(p)
    except OSError:
      pass


def saved(name: str, fn, key, modules=(), **jit_kwargs):
  """Saved(name, fn, key, modules, **jit_kwargs) when enable() turned a cache
  on, else jax.jit(fn, **jit_kwargs)."""
  import jax
  folder = programs_dir()
  return (Saved(name, fn, key, folder, modules, **jit_kwargs) if folder
          else jax.jit(fn, **jit_kwargs))


def recall(name: str, key: str, modules=()):
  """What remember(name, key, value) stored for this code (code_digest(modules)),
  or None (nothing stored, or no cache)."""
  path = _note_path(name, key, modules)
  if path is None:
    return None
  import json
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def remember(name: str, key: str, value, modules=()) -> None:
  """Stores a small JSON value (e.g. a check that passed, by shapes) for recall."""
  path = _note_path(name, key, modules)
  if path is None:
    return
  import json
  write_file(path, lambda f: f.write(json.dumps(value).encode()))


def _note_path(name, key, modules=()):
  folder, code = programs_dir(), code_digest(modules)
  if folder is None or code is None:
    return None
  import hashlib
  h = hashlib.sha256(f'{name}\0{key}\0{code}'.encode()).hexdigest()[:40]
  return os.path.join(folder, f'{name}-{h}.json')
