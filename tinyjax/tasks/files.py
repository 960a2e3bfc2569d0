"""Reading a text file of the project: a corpus, a tokenizer, a chat file.

A relative path is relative to the project root; .xz / .gz / .bz2 files are
decompressed; every failure is one ConfigError naming the config field. Used
by the tokenizer and the tasks (corpus, chat), so neither imports the other.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os

from tinyjax.tasks.base import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPENERS = {'.xz': lzma.open, '.gz': gzip.open, '.bz2': bz2.open}


def resolve(path: str) -> str:
  """A relative path is relative to the project root, wherever the command runs."""
  return path if os.path.isabs(path) else os.path.join(ROOT, path)


def read_text(path: str, field: str = 'task.path', sha256: str = '') -> str:
  """The decoded text of a corpus file; ConfigError naming the field if it is
  missing, unreadable, not UTF-8, empty, or not the file `sha256` names."""
  full = resolve(path)
  if not path or not os.path.isfile(full):
    raise ConfigError(f'{field}: {path!r} is not a file ({full})')
  opener = OPENERS.get(os.path.splitext(full)[1], open)
  try:
    with opener(full, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError, lzma.LZMAError) as e:
    raise ConfigError(f'{field}: {path!r} cannot be read ({e})') from None
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    raise ConfigError(f'{field}: {path!r} is not UTF-8 text (byte {e.start}: '
                      f'{raw[e.start:e.start + 1]!r})') from None
  if not text:
    raise ConfigError(f'{field}: {path!r} is empty')
  if sha256 and hashlib.sha256(raw).hexdigest() != sha256:
    raise ConfigError(f'{field.replace("path", "sha256")}: {path!r} has sha256 {hashlib.sha256(raw).hexdigest()}, '
                      f'not {sha256}; is it the corpus the config names?')
  return text
