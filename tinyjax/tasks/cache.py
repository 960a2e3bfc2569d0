"""Built text tasks, kept on disk: a rerun skips the tokenizer and the encoding.

Building a text task costs seconds on every start (GuppyLM: ~4 CPU s to read
60k conversations, train a byte-level BPE and encode every row; Pillmish ~3 s,
mostly encoding the stream), also on a rerun whose compiled programs come
from the compilation cache. The deterministic, expensive part of a build is
kept here: the tokenizer (HF's tokenizer.json text, as the workdir gets it,
with its kind and eos) and the encoded arrays (a corpus's token streams, a
chat task's padded rows), one .npz per entry.

An entry is keyed by sha256 of everything it depends on: the bytes of the
files read (the corpus, its validation file, a tokenizer.json used as is,
hashed as they are on disk: content, not path or mtime), the config fields
the task reads while building them (each task names its own), the tokenizers
and numpy versions and the source of tinyjax/tasks (a code change is a miss).
What is cheap and reads other fields (token classes, windows, checks) is
computed on every build, so only those named fields are part of the key.

Where: the folder `tinyjax-tasks` in the compilation cache that
tinyjax.compile_cache.enable() turned on (beside the saved programs); when
it is off (TINYJAX_COMPILATION_CACHE=off, or JAX's cache switched off, as
tinyjax.bench's cold timings do) nothing is read or written. Writes are
atomic (a temporary file, then os.replace); beyond MAX_ENTRIES the least
recently used are deleted; an entry that cannot be read is built again.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

FOLDER = 'tinyjax-tasks'  # beside compile_cache.PROGRAMS_DIR
MAX_ENTRIES = 16          # GuppyLM's entry is ~23 MB, Pillmish's ~2.5 MB
_HERE = os.path.dirname(os.path.abspath(__file__))


def folder() -> str | None:
  """The cache folder, or None when the compilation cache is off."""
  from tinyjax import compile_cache
  programs = compile_cache.programs_dir()
  return os.path.join(os.path.dirname(programs), FOLDER) if programs else None


def _file_digest(path: str) -> str:
  """sha256 of a file's bytes as they are on disk; 'absent' if it cannot be
  read (the build then raises the task's own error, and nothing is stored)."""
  from tinyjax.tasks import files
  try:
    with open(files.resolve(path), 'rb') as f:
      return hashlib.file_digest(f, 'sha256').hexdigest()  # (in blocks: a big corpus too)
  except (OSError, TypeError):
    return 'absent'


def code_digest() -> str:
  """sha256 of tinyjax/tasks' source and the libraries that build a task."""
  import tokenizers
  h = hashlib.sha256(f'{tokenizers.__version__} {np.__version__}'.encode())
  for name in sorted(os.listdir(_HERE)):
    if name.endswith('.py'):
      with open(os.path.join(_HERE, name), 'rb') as f:
        h.update(name.encode() + b'\0' + f.read() + b'\0')
  return h.hexdigest()


def plain(cfg) -> dict:
  """A ConfigDict (or dict) as a plain dict, for key()."""
  return cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)


def key(task: str, fields: dict, files: dict[str, str]) -> str | None:
  """The entry's key: `task` (its kind), `fields` (the config values the
  build reads; JSON-able), `files` (role -> path of each file the build
  reads; their bytes are hashed); None when the cache is off."""
  if folder() is None:
    return None
  h = hashlib.sha256(task.encode() + b'\0' + code_digest().encode())
  h.update(json.dumps(fields, sort_keys=True, default=repr).encode())
  for role in sorted(files):
    h.update(f'\0{role}\0{_file_digest(files[role])}'.encode())
  return h.hexdigest()


def _path(k: str) -> str:
  return os.path.join(folder(), f'{k[:40]}.npz')


def load(k: str | None):
  """(Tokenizer, {name: array}) stored under key k, or None (no entry, no
  cache, or an entry that cannot be read)."""
  if k is None:
    return None
  path = _path(k)
  try:
    with np.load(path, allow_pickle=False) as z:
      meta = json.loads(z['__meta__'].tobytes())
      if meta['key'] != k:
        return None
      spec = z['__tokenizer__'].tobytes().decode('utf-8')
      arrays = {name: z[name].astype(dtype, copy=False) for name, dtype in meta['dtypes'].items()}
    import tokenizers
    from tinyjax.tasks import tokenizer as tokenizer_lib
    tok = tokenizer_lib.Tokenizer(tokenizers.Tokenizer.from_str(spec), meta['kind'], meta['eos'])
  except Exception:  # noqa: BLE001  (missing, cut short, another format: built again)
    return None
  try:
    os.utime(path)  # recently used: kept longest
  except OSError:
    pass
  return tok, arrays


def _narrow(x: np.ndarray) -> np.ndarray:
  """x in the smallest dtype that gives it back bit for bit (token ids in
  int16, 0/1 masks as bool): GuppyLM's rows take a third of the disk."""
  if not x.size:
    return x
  if x.dtype.kind == 'f':  # exactly +0.0 and 1.0 (no -0.0, no NaN): bool
    if not np.signbit(x).any() and ((x == 0) | (x == 1)).all():
      return x.astype(np.bool_)
  elif x.dtype.kind in 'iu':
    lo, hi = int(x.min()), int(x.max())
    for t in (np.uint8, np.int8, np.uint16, np.int16):
      if np.dtype(t).itemsize < x.dtype.itemsize and np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
        return x.astype(t)
  return x


def store(k: str | None, tok, arrays: dict[str, np.ndarray]) -> None:
  """Keeps tok (a tinyjax Tokenizer) and arrays under key k; never raises
  (a read-only or full folder: the next start builds again)."""
  if k is None:
    return
  import tokenizers
  spec = tok.hf.to_str()
  if tokenizers.Tokenizer.from_str(spec).to_str() != spec:
    return  # would not give back the same tokenizer.json: not kept
  meta = {'key': k, 'kind': tok.kind, 'eos': tok.eos or '',
          'dtypes': {name: np.dtype(x.dtype).str for name, x in arrays.items()}}
  blobs = {name: _narrow(np.asarray(x)) for name, x in arrays.items()}
  blobs['__meta__'] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
  blobs['__tokenizer__'] = np.frombuffer(spec.encode('utf-8'), np.uint8)
  # Atomic, then the least recently used entries beyond MAX_ENTRIES deleted
  # (load() touches an entry it reads).
  from tinyjax import compile_cache
  compile_cache.write_file(_path(k), lambda f: np.savez(f, **blobs), keep=MAX_ENTRIES)
