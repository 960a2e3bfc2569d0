"""Synthetic token games: fixed rows of a few tokens each.

repeat    Timmy: one colour repeated (`red red red red red<EOS>`);
modular   a op b = c (mod p), the grokking task;
addition  a+b=c with a prompt-masked loss (babyLLM, addy);
induction random tokens repeated once (Olsson et al.'s induction-head task).
"""

from __future__ import annotations

import random

import numpy as np

from tinyjax.tasks.base import ConfigError, Task, make_split, token_classes
from tinyjax.tasks.tokenizer import Vocab


# ----------------------------------------------------------------- repeat ---
def repeat_task(cfg) -> Task:
  """One content token `repeats` times, joined by a separator, then EOS.

  Timmy: `red red red red red<EOS>`; the held-out tokens never appear in training
  but are in the vocabulary and in the prompts.
  """
  content = tuple(cfg.tokens)
  specials = tuple(t for t in (cfg.separator, cfg.eos) if t)
  vocab = Vocab(content + specials, eos=cfg.eos or None)
  for tok in cfg.held_out:
    if tok not in content:
      raise ConfigError(f'task.held_out: {tok!r} is not one of task.tokens '
                        f'{list(content)}')
  if cfg.repeats < 1:
    raise ConfigError(f'task.repeats: {cfg.repeats} is not allowed; use >= 1')

  def line(tok):
    text = (cfg.separator or '').join([tok] * cfg.repeats) + (cfg.eos or '')
    return vocab.encode(text)

  trained = [t for t in content if t not in cfg.held_out]
  names, of_token = token_classes(vocab, dict(cfg.classes))
  train = make_split(vocab, [line(t) for t in trained], of_token)
  evals = {}
  if cfg.held_out:
    evals['heldout'] = make_split(vocab, [line(t) for t in cfg.held_out], of_token)
  expected = {t: vocab.decode(line(t)[1:]) for t in content}
  return Task(vocab=vocab, train=train, evals=evals, class_names=names,
              prompts=tuple(content), expected=expected,
              train_lines=tuple(vocab.decode(line(t), stop_at_eos=False)
                                for t in trained))


# ---------------------------------------------------------------- modular ---
MODULAR_OPS = {
    '+': lambda a, b, p: (a + b) % p,
    '-': lambda a, b, p: (a - b) % p,
    '*': lambda a, b, p: (a * b) % p,
    '/': lambda a, b, p: (a * pow(b, -1, p)) % p,  # b's inverse mod p; b != 0
}


def modular_pairs(p: int, op: str) -> list[tuple[int, int]]:
  """Every operand pair (a, b), a-major; division leaves out b = 0."""
  return [(a, b) for a in range(p) for b in range(p) if not (op == '/' and b == 0)]


def modular_split(p: int, op: str, train_fraction: float, split_seed: int
                  ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
  """(train pairs, test pairs): a seeded shuffle of every pair, cut at the fraction.

  Python's `random` shuffle of the a-major pair list, cut at int(frac * N): for
  addition the same split as Nanda et al.'s gen_train_test with seed=split_seed.
  """
  pairs = modular_pairs(p, op)
  random.Random(split_seed).shuffle(pairs)
  cut = int(train_fraction * len(pairs))
  return pairs[:cut], pairs[cut:]


def modular_task(cfg) -> Task:
  """`a op b = c (mod p)`, one token per residue (Power et al. 2022).

  Vocabulary: the residues '0'..'p-1' (token id = residue), then the op token
  (only if task.show_op), then '='. Rows are `a op b = c` (or Nanda et al.'s
  `a b = c` without the op token); only the answer c is scored (the loss mask
  starts at the last target), so loss and accuracy are the answer's. The pairs
  not in the training fraction are the eval split 'test'.
  """
  p, op = cfg.p, cfg.op
  if op not in MODULAR_OPS:
    raise ConfigError(f'task.op: {op!r} is not allowed; choose one of {list(MODULAR_OPS)}')
  if p < 2:
    raise ConfigError(f'task.p: {p} is not allowed; use a modulus >= 2')
  if op == '/' and any(p % k == 0 for k in range(2, int(p ** 0.5) + 1)):
    raise ConfigError(f'task.p: {p} is not prime; division needs every b != 0 to '
                      'have an inverse mod p')
  if not 0.0 < cfg.train_fraction < 1.0:
    raise ConfigError(f'task.train_fraction: {cfg.train_fraction} is not allowed; '
                      'use a value in (0, 1)')
  residues = tuple(str(i) for i in range(p))
  vocab = Vocab(residues + ((op,) if cfg.show_op else ()) + ('=',))
  op_ids = [vocab.id(op)] if cfg.show_op else []
  fn = MODULAR_OPS[op]
  names, of_token = ('answer',), np.zeros(len(vocab), np.int32)

  def split(pairs):
    lines = [[a, *op_ids, b, vocab.id('='), fn(a, b, p)] for a, b in pairs]
    # The last target (the answer, predicted at '=') is the only one scored.
    return make_split(vocab, lines, of_token, score_from=[len(l) - 2 for l in lines])

  train_pairs, test_pairs = modular_split(p, op, cfg.train_fraction, cfg.split_seed)
  if not train_pairs or not test_pairs:
    raise ConfigError(f'task.train_fraction: {cfg.train_fraction} leaves an empty '
                      f'train or test split of the {len(train_pairs) + len(test_pairs)} pairs')
  # No prompts: test/accuracy is the greedy answer at '=' on every held-out pair.
  return Task(vocab=vocab, train=split(train_pairs), evals={'test': split(test_pairs)},
              class_names=names, prompts=(), expected={})


# --------------------------------------------------------------- addition ---
def _pair(text: str, field: str) -> tuple[int, int]:
  """'12+34' or '12+34=' -> (12, 34)."""
  a, plus, b = text.rstrip('=').partition('+')
  if not (plus and a.isdigit() and b.isdigit()):
    raise ConfigError(f'{field}: {text!r} is not of the form a+b (decimal a, b)')
  return int(a), int(b)


def addition_task(cfg) -> Task:
  """Lines `a+b=c<eos>` with decimal operands in [0, max_operand].

  Only the answer is trained: a line's targets before the first `=` are masked
  (make_split's score_from), so the loss is the mean over answer digits and the
  line-ending token (or over the first `scored_tokens` of them, if > 0).
  babyLLM (single digits, ' ' ends a line, every pair but 4+4) and addy
  (0..999, <EOS>, 100,000 random pairs) are both this task.

  Splits and prompts (all from `data_seed`, shared by every run of a sweep):
    train      every pair not held out (num_train 0), or num_train distinct
               random pairs drawn uniformly from the pairs not held out;
    heldout    the held-out pairs (eval split), if any;
    val        num_val random pairs that are neither trained nor held out;
    buckets    per name, up to bucket_size untrained prompts `a+b=` with a and b
               uniform in [0, bound), scored as `exact/<name>` (greedy decoding).
  """
  vocab = Vocab(tuple(cfg.tokens), eos=cfg.eos)
  needed = set('0123456789+=') | {cfg.eos}
  if missing := sorted(needed - set(vocab.tokens)):
    raise ConfigError(f'task.tokens: {list(vocab.tokens)} lacks {missing}')
  top = cfg.max_operand
  if top < 0:
    raise ConfigError(f'task.max_operand: {top} is not allowed; use >= 0')
  if cfg.scored_tokens < 0:
    raise ConfigError(f'task.scored_tokens: {cfg.scored_tokens} is not allowed; use '
                      '0 (the whole answer and the line end) or N > 0')
  n_pairs = (top + 1) ** 2
  pair_id = lambda a, b: a * (top + 1) + b
  held = []
  for text in cfg.held_out:
    a, b = _pair(text, 'task.held_out')
    if max(a, b) > top:
      raise ConfigError(f'task.held_out: {text!r} has an operand above '
                        f'task.max_operand={top}')
    held.append(pair_id(a, b))
  rng = np.random.default_rng(cfg.data_seed)
  pool = np.setdiff1d(np.arange(n_pairs), held)
  if cfg.num_train == 0:
    train_ids = pool  # every pair, in order: a-major
  elif 0 < cfg.num_train <= len(pool):
    train_ids = rng.choice(pool, cfg.num_train, replace=False)
  else:
    raise ConfigError(f'task.num_train: {cfg.num_train} is not allowed; use 0 (all) '
                      f'or 1..{len(pool)} (the pairs not held out)')
  untrained = np.ones(n_pairs, bool)
  untrained[train_ids] = False
  rest = np.setdiff1d(pool, train_ids)
  if not 0 <= cfg.num_val <= len(rest):
    raise ConfigError(f'task.num_val: {cfg.num_val} is not allowed; use 0..{len(rest)} '
                      '(the pairs neither trained nor held out)')
  val_ids = rng.choice(rest, cfg.num_val, replace=False)

  # Every token is one character except the line end: a dict lookup, not the
  # greedy matcher, keeps 100,000 lines fast.
  index = {t: i for i, t in enumerate(vocab.tokens)}
  eq = index['=']

  def line(pid):
    a, b = divmod(int(pid), top + 1)
    return [index[ch] for ch in f'{a}+{b}={a + b}'] + [vocab.eos_id]

  names, of_token = token_classes(vocab, dict(cfg.classes))

  def split(ids):
    lines = [line(i) for i in ids]
    # The target at index j is token j + 1: scoring from the index of `=`
    # trains the first answer digit onwards (scored_tokens > 0: only so many).
    starts = [l.index(eq) for l in lines]
    ends = [s + cfg.scored_tokens for s in starts] if cfg.scored_tokens else None
    return make_split(vocab, lines, of_token, starts, score_until=ends,
                      length=len(f'{top}+{top}={2 * top}') + 1)

  evals = {}
  if held:
    evals['heldout'] = split(held)
  if cfg.num_val:
    evals['val'] = split(val_ids)
  buckets = {}
  a_all, b_all = np.divmod(np.arange(n_pairs), top + 1)
  for name, bound in cfg.buckets.items():
    if not 0 < bound <= top + 1:
      raise ConfigError(f'task.buckets.{name}: {bound} is not allowed; use 1..{top + 1} '
                        '(operands are drawn from [0, bound))')
    cands = np.flatnonzero(untrained & (a_all < bound) & (b_all < bound))
    picked = rng.choice(cands, min(cfg.bucket_size, len(cands)), replace=False)
    buckets[name] = tuple(f'{i // (top + 1)}+{i % (top + 1)}=' for i in picked)
  prompts = tuple(cfg.prompts)
  expected = {}
  for p in prompts + sum(buckets.values(), ()):
    if not p.endswith('='):
      raise ConfigError(f'task.prompts: {p!r} does not end with =')
    a, b = _pair(p, 'task.prompts')
    expected[p] = str(a + b)
  return Task(vocab=vocab, train=split(train_ids), evals=evals, class_names=names,
              prompts=prompts, expected=expected,
              train_lines=tuple(vocab.decode(line(i), stop_at_eos=False)
                                for i in train_ids),
              prompt_buckets=buckets)


# -------------------------------------------------------------- induction ---
ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/'


def induction_task(cfg) -> Task:
  """L uniformly random tokens, then the same L again (Olsson et al.), with L
  drawn per row from [min_length, length] (padded to 2 * length): the first
  copy cannot be predicted (loss ln V), the repeat can be, by an induction head
  (find the earlier copy of the current token, read the token after it). A
  varying L matters: with one fixed L a head attending a fixed distance back
  solves the task by position, and no induction head forms. Tokens are single
  characters, so rows print as text.

  Classes by position: `first` (targets in the first copy), `repeat` (targets
  in the repeat). Prompts: `prompts` held-out rows cut `prompt_repeat` tokens
  into the repeat; the expected completion is the rest of the repeat.
  """
  if not 2 <= cfg.vocab_size <= len(ALPHABET):
    raise ConfigError(f'task.vocab_size: {cfg.vocab_size} is not allowed; use 2..{len(ALPHABET)}')
  if not 2 <= cfg.min_length <= cfg.length:
    raise ConfigError(f'task.min_length: {cfg.min_length} is not allowed; use 2..task.length '
                      f'({cfg.length})')
  vocab = Vocab(tuple(ALPHABET[:cfg.vocab_size]))
  rng = np.random.default_rng(cfg.data_seed)

  def rows(n):
    lengths = rng.integers(cfg.min_length, cfg.length + 1, n)
    return [np.tile(rng.integers(0, cfg.vocab_size, l), 2) for l in lengths]

  def split(lines):
    s = make_split(vocab, [r.tolist() for r in lines], np.zeros(cfg.vocab_size, np.int32),
                   length=2 * cfg.length)
    target = np.arange(1, 2 * cfg.length)[None]   # index of each target in its row
    half = np.asarray([len(r) // 2 for r in lines])[:, None]
    s.cls_NxT = np.where(s.mask_NxT > 0, (target >= half).astype(np.int32), -1).astype(np.int32)
    return s
  train_rows, test_rows = rows(cfg.train_rows), rows(cfg.eval_rows)
  prompts, expected = [], {}
  for r in test_rows[:cfg.prompts]:
    cut = len(r) // 2 + cfg.prompt_repeat
    prompts.append(vocab.decode(r[:cut].tolist(), False))
    expected[prompts[-1]] = vocab.decode(r[cut:].tolist(), False)
  return Task(vocab=vocab, train=split(train_rows), evals={'test': split(test_rows)},
              class_names=('first', 'repeat'), prompts=tuple(prompts), expected=expected)
