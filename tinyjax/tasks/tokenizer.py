r"""Tokenizers: one small interface for every task.

Both classes below have `tokens` (the text of each id), `len()`, `id(token)`,
`encode(text)`, `decode(ids)`, `eos_id` (-1 if none); a ConfigError names the
text that cannot be encoded.

  Vocab      a fixed list of token strings, greedy longest match (the
             synthetic games: 'red', ' ', '<EOS>').
  Tokenizer  an HF `tokenizers` model trained on a corpus's train split:
               char  the corpus's distinct characters, sorted by code point
                     (tiny-llm); a WordLevel model over single characters;
               word  WordLevel over `Whitespace` pre-splits (\w+|[^\w\s]+),
                     optional lowercase, an unknown token (Pillmish);
               bpe   byte-level BPE (GuppyLM: ByteLevel pre-tokenizer without
                     prefix space, ByteLevel decoder).
             Saved as WORKDIR/tokenizer.json, HF's own format exactly (it
             loads with `tokenizers.Tokenizer.from_file` and transformers'
             `PreTrainedTokenizerFast(tokenizer_file=...)`), with tinyjax's
             kind and eos beside it in WORKDIR/tinyjax_tokenizer.json; loaded
             from there by generate, chat, peek and the exporters. (Workdirs
             written before kept them in a `tinyjax` key inside
             tokenizer.json, which HF rejects; they still load.)

A Vocab has no file in the workdir (the config defines it); `hf_tokenizer()`
builds the HF tokenizer that encodes as it does, for the exports.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np

from tinyjax.tasks import files
from tinyjax.tasks.base import ConfigError

KINDS = ('char', 'word', 'bpe')
META = 'tinyjax_tokenizer.json'  # {kind, eos} beside tokenizer.json


def meta_path(path: str) -> str:
  """Where tinyjax's metadata of the tokenizer file `path` lives."""
  return os.path.join(os.path.dirname(path), META)


def _pattern(tokens) -> str:
  """An Oniguruma alternation of `tokens`, longest first: at each position the
  first alternative that matches is the longest token there (Vocab.encode's
  greedy longest match). Characters other than ASCII letters and digits are
  written as \\x{HEX}, so no token needs regex escaping rules."""
  esc = lambda t: ''.join(c if c.isascii() and c.isalnum() else f'\\x{{{ord(c):X}}}' for c in t)
  return '|'.join(esc(t) for t in sorted((t for t in tokens if t), key=len, reverse=True))


@dataclasses.dataclass(frozen=True)
class Vocab:
  """Tokens as strings; text is encoded by greedy longest match."""
  tokens: tuple[str, ...]
  eos: str | None = None

  def __post_init__(self):
    if len(set(self.tokens)) != len(self.tokens):
      raise ConfigError(f'task: duplicate tokens in vocabulary {self.tokens}')

  def __len__(self):
    return len(self.tokens)

  @property
  def eos_id(self) -> int:
    return self.tokens.index(self.eos) if self.eos is not None else -1

  def id(self, token: str) -> int:
    return self.tokens.index(token)

  def encode(self, text: str) -> list[int]:
    by_length = sorted(range(len(self.tokens)), key=lambda i: -len(self.tokens[i]))
    ids, pos = [], 0
    while pos < len(text):
      for i in by_length:
        if self.tokens[i] and text.startswith(self.tokens[i], pos):
          ids.append(i)
          pos += len(self.tokens[i])
          break
      else:
        raise ConfigError(
            f'text {text!r}: {text[pos:]!r} at character {pos} is not in the '
            f'vocabulary {list(self.tokens)}')
    return ids

  def decode(self, ids: Sequence[int], stop_at_eos: bool = True) -> str:
    out = []
    for i in ids:
      if stop_at_eos and int(i) == self.eos_id:
        break
      out.append(self.tokens[int(i)])
    return ''.join(out)

  def hf_tokenizer(self):
    """The HF `tokenizers.Tokenizer` that encodes text to the same ids: the
    tokens as a WordLevel vocabulary, a Split pre-tokenizer whose regex is the
    greedy longest match, and a Fuse decoder (ids -> the tokens joined).
    Text with no token at some position fails to encode, as here."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers
    hf = tokenizers.Tokenizer(models.WordLevel({t: i for i, t in enumerate(self.tokens)},
                                               unk_token=None))
    hf.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex(_pattern(self.tokens)), 'isolated')
    hf.decoder = decoders.Fuse()
    return hf


class Tokenizer:
  """A trained HF tokenizer (char, word or bpe) behind the Vocab interface."""

  def __init__(self, hf, kind: str, eos: str = ''):
    self.hf, self.kind, self.eos = hf, kind, eos or None
    n = hf.get_vocab_size(with_added_tokens=True)
    # The text of each id on its own (special tokens included).
    self.tokens = tuple(hf.decode([i], skip_special_tokens=False) for i in range(n))
    self._raw = tuple(hf.id_to_token(i) for i in range(n))
    if self.eos is not None and hf.token_to_id(self.eos) is None:
      raise ConfigError(f'task.tokenizer.eos: {eos!r} is not a token of the tokenizer')
    # char: a dict lookup per character encodes a 1 MB corpus in ~0.1 s
    # (HF: ~2.5 s); the ids are the same.
    self._char_ids = ({t: i for i, t in enumerate(self._raw)} if kind == 'char' else None)

  def __len__(self):
    return len(self.tokens)

  @property
  def eos_id(self) -> int:
    return self.hf.token_to_id(self.eos) if self.eos is not None else -1

  def id(self, token: str) -> int:
    i = self.hf.token_to_id(token)
    return self.tokens.index(token) if i is None else i

  def encode(self, text: str) -> list[int]:
    return self.encode_array(text).tolist()

  def encode_array(self, text: str) -> np.ndarray:
    if self._char_ids is not None:
      try:
        return np.fromiter(map(self._char_ids.__getitem__, text), np.int32, len(text))
      except KeyError as e:
        pos = next(i for i, ch in enumerate(text) if ch not in self._char_ids)
        raise ConfigError(f'text {_short(text)!r}: character {e.args[0]!r} at {pos} is not '
                          f'in the vocabulary ({len(self)} characters of the corpus)') from None
    try:
      return np.asarray(self.hf.encode(text).ids, np.int32)
    except Exception as e:  # WordLevel without an unknown token
      raise ConfigError(f'text {_short(text)!r} cannot be encoded: {e}') from None

  def decode(self, ids: Sequence[int], stop_at_eos: bool = True) -> str:
    ids = [int(i) for i in ids]
    if stop_at_eos and self.eos_id in ids:
      ids = ids[:ids.index(self.eos_id)]
    if self.kind == 'char':
      return ''.join(self._raw[i] for i in ids)
    return self.hf.decode(ids, skip_special_tokens=False)

  def hf_tokenizer(self):
    return self.hf

  def save(self, path: str):
    """`path` (tokenizer.json) in HF's format as it is, and tinyjax's kind and
    eos in META beside it."""
    _write(path, self.hf.to_str())
    _write(meta_path(path), json.dumps({'kind': self.kind, 'eos': self.eos or ''}))

  @classmethod
  def load(cls, path: str, eos: str = '', field: str = 'tokenizer') -> 'Tokenizer':
    """A tokenizer.json saved by tinyjax (its META beside it, or, as written
    before, a `tinyjax` key inside), or any HF one (.json or .json.xz; then
    `eos` names its end token). A file that is not one: ConfigError naming it."""
    import tokenizers
    spec = _json(files.read_text(path, field), path, field)
    meta = spec.pop('tinyjax', None)  # a workdir written before META
    if meta is None and os.path.isfile(meta_path(path)):
      meta = _json(files.read_text(meta_path(path), field), meta_path(path), field)
    meta = meta or {}
    kind = meta.get('kind', _kind_of(spec))
    if kind not in KINDS or not isinstance(meta.get('eos', ''), str):
      raise ConfigError(f'{field}: {meta_path(path)!r} has kind {kind!r} and eos '
                        f'{meta.get("eos")!r}; expected a kind of {list(KINDS)} and a string')
    try:
      hf = tokenizers.Tokenizer.from_str(json.dumps(spec))
    except Exception as e:  # tokenizers raises a bare Exception
      raise ConfigError(f'{field}: {path!r} is not a tokenizer file that HF tokenizers '
                        f'reads ({" ".join(str(e).split())[:160]})') from None
    return cls(hf, kind, meta.get('eos', eos))


def _kind_of(spec: dict) -> str:
  """The kind of an HF tokenizer.json without tinyjax's metadata: char
  (WordLevel split into characters), word (WordLevel) or bpe (the rest)."""
  model = spec.get('model') if isinstance(spec.get('model'), dict) else {}
  pre = spec.get('pre_tokenizer') if isinstance(spec.get('pre_tokenizer'), dict) else {}
  if model.get('type') == 'WordLevel':
    return 'char' if pre.get('type') == 'Split' else 'word'
  return 'bpe'


def _write(path: str, text: str):
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


def _json(text: str, path: str, field: str) -> dict:
  """The JSON object in `text` (the file `path`); ConfigError if it is not one."""
  try:
    spec = json.loads(text)
  except json.JSONDecodeError as e:
    raise ConfigError(f'{field}: {path!r} is not valid JSON ({e.msg} at line {e.lineno} '
                      f'column {e.colno}); is the file cut short or overwritten?') from None
  if not isinstance(spec, dict):
    raise ConfigError(f'{field}: {path!r} holds a JSON {type(spec).__name__}, not a '
                      'tokenizer (an object)')
  return spec


def _short(text: str, n: int = 40) -> str:
  return text if len(text) <= n else text[:n] + '...'


def train(cfg, text: str) -> Tokenizer:
  """A tokenizer of kind cfg.kind trained on `text` (a corpus's train split).

  cfg fields: kind; vocab_size and min_frequency (word, bpe); lowercase (word);
  special_tokens (word, bpe: ids 0.. in this order); unk (word); eos ('' = none).
  """
  import tokenizers
  from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers
  kind = cfg.kind
  if kind not in KINDS:
    raise ConfigError(f'task.tokenizer.kind: {kind!r} is not allowed; choose one of {list(KINDS)}')
  if kind == 'char':
    chars = sorted(set(text))
    hf = tokenizers.Tokenizer(models.WordLevel({c: i for i, c in enumerate(chars)},
                                               unk_token=None))
    hf.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex(r'[\s\S]'), 'isolated')
    hf.decoder = decoders.Fuse()
    return Tokenizer(hf, kind, cfg.get('eos', ''))
  specials = list(cfg.get('special_tokens', ()))
  if cfg.vocab_size < len(specials) + 1:
    raise ConfigError(f'task.tokenizer.vocab_size: {cfg.vocab_size} is not allowed; use '
                      f'more than the {len(specials)} special tokens')
  if kind == 'word':
    unk = cfg.get('unk', '[UNK]')
    if unk not in specials:
      specials.append(unk)
    hf = tokenizers.Tokenizer(models.WordLevel(unk_token=unk))
    if cfg.get('lowercase', False):
      hf.normalizer = normalizers.Lowercase()
    hf.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=cfg.vocab_size,
                                        min_frequency=cfg.get('min_frequency', 0),
                                        special_tokens=specials, show_progress=False)
  else:
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size,
                                  min_frequency=cfg.get('min_frequency', 2),
                                  special_tokens=specials, show_progress=False)
  hf.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
  return Tokenizer(hf, kind, cfg.get('eos', ''))
