"""Pilish decoding (Pillmish, spec section 6): the n-th generated word has as
many letters as pi's n-th digit (3, 1, 4, 1, 5, ...; a 0 asks for 10 letters).

`Pilish(tokens, n_words)` is a logits-mask hook for tinyjax.sampler (`sample`
and `beam_search`): word i of the generated text (0-based, prompt words not
counted) may only be a vocabulary entry made of exactly L(D[offset + i]) ASCII
letters, D = pi's digits 3, 1, 4, 1, 5, 9, ... and L(k) = k, L(0) = 10.
Punctuation, digits, mixed tokens, special tokens and non-ASCII letters are
never allowed while the constraint runs. One token = one word (a word-level
vocabulary); no backtracking, no lookahead.

Past n_words the constraint lets every token through (the text is free from
there on, e.g. to end a sentence); `check` and `satisfied` agree with that.
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from tinyjax.tasks import ConfigError

_LETTERS = re.compile(r'[A-Za-z]+')
LONGEST = 10  # L(0)


@functools.lru_cache(maxsize=8)
def pi_digits(n: int) -> str:
  """The first n decimal digits of pi, '31415926535...' (the 3 included).

  Gibbons' unbounded spigot (2006) on Python integers: exact, no floating point.
  """
  q, r, t, k, m, x = 1, 0, 1, 1, 3, 3
  out = []
  while len(out) < n:
    if 4 * q + r - t < m * t:  # digit m is settled
      out.append(m)
      q, r, m = 10 * q, 10 * (r - m * t), (10 * (3 * q + r)) // t - 10 * m
    else:
      q, r, t, k, m, x = (q * k, (2 * q + r) * x, t * x, k + 1,
                          (q * (7 * k + 2) + r * x) // (t * x), x + 2)
  return ''.join(map(str, out))


def word_length(d: int) -> int:
  """The word length a digit asks for: d for 1..9, 10 for 0."""
  d = int(d)
  if not 0 <= d <= 9:
    raise ValueError(f'word_length: {d} is not a decimal digit')
  return d or LONGEST


def is_word(token: str) -> bool:
  """Whether a token counts as a word: ASCII letters only ([A-Za-z]+)."""
  return _LETTERS.fullmatch(token) is not None


def length_table(tokens: Sequence[str]) -> np.ndarray:
  """bool[11, V]: row n (1..10) marks the tokens of exactly n ASCII letters;
  row 0 is unused (all False). tokens: the vocabulary's strings in id order
  (e.g. Tokenizer.tokens)."""
  table_NxV = np.zeros((LONGEST + 1, len(tokens)), bool)
  for i, tok in enumerate(tokens):
    if is_word(tok) and len(tok) <= LONGEST:
      table_NxV[len(tok), i] = True
  return table_NxV


class Pilish:
  """The Pilish constraint over a vocabulary, for n_words generated words.

  Args:
    tokens: the vocabulary's token strings in id order.
    n_words: how many words follow pi; later tokens are unconstrained.
    offset: the pi digit the first word gets (0 = the 3 of 3.14).
  Raises ConfigError if a digit among the first offset + n_words asks for a
  length no vocabulary word has (only the digits used are checked).

  Sampler hook (state = the number of words generated so far, int32[P]):
    init(n_prompts) -> zeros; allowed(state) -> bool[P, V]; update(state, tok_P)
    -> state + 1. The masks are one [11, V] table (row 0 = every token, the
    row of words past n_words) and the digit rows int32[n_words + 1], both jnp
    arrays built once.
  """

  def __init__(self, tokens: Sequence[str], n_words: int, offset: int = 0):
    if n_words < 0 or offset < 0:
      raise ConfigError(f'pilish: n_words ({n_words}) and offset ({offset}) must be >= 0')
    self.n_words, self.offset = int(n_words), int(offset)
    self.digits = pi_digits(self.offset + self.n_words)[self.offset:]
    table_NxV = length_table(tokens)
    for i, d in enumerate(self.digits):
      n = word_length(d)
      if not table_NxV[n].any():
        raise ConfigError(f'pilish: digit {d} (position {self.offset + i}) needs a '
                          f'{n}-letter word; the vocabulary has none')
    self.table_NxV = table_NxV  # numpy, row 0 unused
    free_NxV = table_NxV.copy()
    free_NxV[0] = True  # the row of the words past n_words
    self._table_NxV = jnp.asarray(free_NxV)
    rows = [word_length(d) for d in self.digits] + [0]
    self._row_W = jnp.asarray(rows, jnp.int32)  # W = n_words + 1

  # ------------------------------------------------------------ sampler hook ---
  def init(self, n_prompts: int):
    return jnp.zeros((n_prompts,), jnp.int32)

  def allowed(self, word_P):
    return self._table_NxV[self._row_W[jnp.minimum(word_P, self.n_words)]]

  def update(self, word_P, tok_P):
    del tok_P  # one token = one word
    return word_P + 1

  # ----------------------------------------------------------------- checks ---
  def check(self, words: Sequence[str]) -> list[tuple[int, str, int | None, bool]]:
    """(index, word, digit, ok) per word: ok = ASCII letters only and exactly
    L(digit) of them. Words past n_words get digit None and ok True (free)."""
    out = []
    for i, w in enumerate(words):
      if i >= self.n_words:
        out.append((i, w, None, True))
        continue
      d = int(self.digits[i])
      out.append((i, w, d, is_word(w) and len(w) == word_length(d)))
    return out

  def satisfied(self, text: str) -> bool:
    """Whether the words of text (split on spaces) follow pi; a text shorter
    than n_words is judged on the words it has (a Pilish prefix passes)."""
    return all(ok for *_, ok in self.check(text.split()))
