"""What every task is made of: a vocabulary, batch sources, token classes.

A task turns `config.task` into a `Task`: a vocabulary (tinyjax.tasks.tokenizer),
a `train` source and optional eval sources, the names of the token classes that
partition the trained targets, and prompts (with expected completions, where
the task knows them) for generation.

Two kinds of batch source, one interface (`arrays`, `batch`, `evaluate`):
  Split   fixed rows (the synthetic games): full batch, or minibatches cut from
          a per-epoch shuffle of the rows; evaluated on every row.
  Stream  one token stream (a corpus): each batch is `batch_size` random windows
          of `block_size + 1` tokens drawn inside the jitted step from the
          run's key; evaluated as the mean over `eval_iters` random batches.
The arrays live on the device; `batch` and `evaluate` are traced per run (and
vmapped over runs by tinyjax.program), so a source holds only static facts.

A batch, for N sequences of T inputs:
  x_NxT     input tokens; padding is token id 0.
  y_NxT     next-token targets.
  mask_NxT  1.0 where the target is trained / scored, else 0.0.
  cls_NxT   index into `Task.class_names` of each scored target, -1 elsewhere.
  valid_NxT 1.0 where x is a real token (queries that count for attention stats).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Minibatch shuffles: up to this many rows the epoch's permutation is drawn
# exactly (jax.random.permutation, under 0.3 ms on a CPU); above it, sorting all
# rows every step would dominate a tiny model's step, so `shuffled_index`
# computes only the b entries the step needs.
EXACT_SHUFFLE_ROWS = 1024
FEISTEL_ROUNDS = 8


class ConfigError(ValueError):
  """A mistake in a config or flag value: reported as one line, exit status 2."""


@dataclasses.dataclass
class Split:
  """Fixed, right-padded rows."""
  x_NxT: np.ndarray
  y_NxT: np.ndarray
  mask_NxT: np.ndarray
  cls_NxT: np.ndarray
  valid_NxT: np.ndarray

  @property
  def num_rows(self) -> int:
    return self.x_NxT.shape[0]

  @property
  def seq_len(self) -> int:
    return self.x_NxT.shape[1]

  def arrays(self) -> dict[str, np.ndarray]:
    return dataclasses.asdict(self)

  def batch(self, arrays, key, step, batch_size: int):
    """Full batch (batch_size 0 or >= rows), or minibatch `step` of a per-epoch
    shuffle drawn from `key` (no data-loader state: resume is exact)."""
    n = arrays['x_NxT'].shape[0]
    if not batch_size or batch_size >= n:
      return arrays
    per_epoch = n // batch_size
    key = jax.random.fold_in(key, step // per_epoch)
    pos = (step % per_epoch) * batch_size + jnp.arange(batch_size)
    if n <= EXACT_SHUFFLE_ROWS:
      idx = jax.random.permutation(key, n)[pos]
    else:
      idx = shuffled_index(key, pos, n)
    return jax.tree.map(lambda x: x[idx], arrays)

  def evaluate(self, metrics_fn, arrays, key):
    """metrics_fn over every row (key unused: nothing is drawn)."""
    del key
    return metrics_fn(arrays)


@dataclasses.dataclass
class Stream:
  """One token stream; batches are random windows of block_size + 1 tokens."""
  tokens_N: np.ndarray          # int32 token ids
  class_of_token_V: np.ndarray  # int32 class index of each token id as a target
  block_size: int               # T: inputs per window
  eval_iters: int = 1           # random batches per evaluation
  eval_batch_size: int = 1      # windows per evaluation batch

  @property
  def seq_len(self) -> int:
    return self.block_size

  def arrays(self) -> dict[str, np.ndarray]:
    return {'tokens_N': self.tokens_N, 'class_of_token_V': self.class_of_token_V}

  def windows(self, arrays, key, n_windows: int):
    """n_windows windows with starts uniform in [0, len - block_size - 1]
    (tiny-llm / nanoGPT: x = data[i:i+T], y = data[i+1:i+T+1])."""
    toks, t = arrays['tokens_N'], self.block_size
    start_N = jax.random.randint(key, (n_windows,), 0, toks.shape[0] - t)
    w_NxT1 = toks[start_N[:, None] + jnp.arange(t + 1)[None, :]]
    x_NxT, y_NxT = w_NxT1[:, :-1], w_NxT1[:, 1:]
    ones = jnp.ones(x_NxT.shape, jnp.float32)
    return {'x_NxT': x_NxT, 'y_NxT': y_NxT, 'mask_NxT': ones,
            'cls_NxT': arrays['class_of_token_V'][y_NxT], 'valid_NxT': ones}

  def batch(self, arrays, key, step, batch_size: int):
    return self.windows(arrays, jax.random.fold_in(key, step), batch_size)

  def evaluate(self, metrics_fn, arrays, key):
    """Mean of metrics_fn over eval_iters random batches (one at a time, so
    memory does not grow with eval_iters); NaN-free means per class."""
    keys = jax.random.split(key, self.eval_iters)
    ms = jax.lax.map(lambda k: metrics_fn(self.windows(arrays, k, self.eval_batch_size)),
                     keys)
    return jax.tree.map(lambda v: jnp.nanmean(v, axis=0), ms)


@dataclasses.dataclass
class Task:
  vocab: object                 # tokenizer.Vocab or tokenizer.Tokenizer
  train: Split | Stream
  evals: dict[str, Split | Stream]  # scored on a schedule, e.g. {'test': ...};
                                # an eval source named 'train' reads the training data
  class_names: tuple[str, ...]  # partition of the trained targets
  prompts: tuple[str, ...]      # for generations
  expected: dict[str, str]      # prompt -> expected greedy completion (if known)
  train_lines: tuple[str, ...] = ()
  # Prompts scored only in aggregate: the metric `exact/<bucket>` is the fraction
  # of a bucket's prompts whose greedy completion is exactly `expected[prompt]`.
  prompt_buckets: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  # How a prompt is put to the model ('{prompt}' = the text): a chat task
  # wraps it in the user turn and opens the assistant's.
  prompt_template: str = '{prompt}'
  # The per-target loss: fn(logits_BxTxV, y_BxT) -> loss_BxT (its masked mean
  # is the training loss, and loss/<class> its per-class means); None: cross-entropy.
  loss: object = None

  @property
  def max_len(self) -> int:
    return max([self.train.seq_len] + [s.seq_len for s in self.evals.values()])


def make_split(vocab, lines: Sequence[list[int]],
               class_of_token: np.ndarray, score_from: Sequence[int] | None = None,
               length: int | None = None,
               score_until: Sequence[int] | None = None) -> Split:
  """Pads token rows and builds targets, masks and classes.

  Args:
    vocab: the vocabulary.
    lines: token id lists.
    class_of_token: [V] class index of each token id as a target (-1: none).
    score_from: per line, the first target index that is scored (the loss mask
      for prompt-masked tasks: targets before it are context only). None: all.
    length: pad to this many tokens (default: the longest line).
    score_until: per line, one past the last scored target index. None: all.
  """
  n = len(lines)
  if n == 0:
    raise ConfigError('task: the split has no sequences (empty training set?)')
  t1 = length or max(len(l) for l in lines)
  tokens = np.zeros((n, t1), np.int32)
  real = np.zeros((n, t1), np.float32)
  for r, line in enumerate(lines):
    tokens[r, :len(line)] = line
    real[r, :len(line)] = 1.0
  x, y = tokens[:, :-1], tokens[:, 1:]
  mask = real[:, 1:].copy()
  if score_from is not None:
    for r, start in enumerate(score_from):
      mask[r, :start] = 0.0
  if score_until is not None:
    for r, end in enumerate(score_until):
      mask[r, end:] = 0.0
  cls = np.where(mask > 0, class_of_token[y], -1).astype(np.int32)
  return Split(x_NxT=x, y_NxT=y, mask_NxT=mask, cls_NxT=cls,
               valid_NxT=real[:, :-1].copy())


def token_classes(vocab, classes: dict[str, Sequence[str] | str]
                  ) -> tuple[tuple[str, ...], np.ndarray]:
  """Class index per token id; tokens in no named class go to 'other'.

  A class is a tuple/list of tokens (each must be in the vocabulary), or a
  string: a character set, holding every token whose text is made only of
  those characters (text tasks: {'letter': 'ab..z', 'space': ' ', ...}).
  """
  names = list(classes)
  of_token = np.full(len(vocab), -1, np.int32)

  def claim(c, name, tid, tok):
    if of_token[tid] >= 0:
      raise ConfigError(f'task.classes: token {tok!r} is in two classes ({names[of_token[tid]]}, '
                        f'{name}); classes must partition the targets')
    of_token[tid] = c

  for c, name in enumerate(names):
    spec = classes[name]
    if isinstance(spec, str):
      chars = set(spec)
      for tid, tok in enumerate(vocab.tokens):
        if tok and set(tok) <= chars:
          claim(c, name, tid, tok)
      continue
    for tok in spec:
      if tok not in vocab.tokens:
        shown = list(vocab.tokens) if len(vocab) <= 64 else f'{len(vocab)} tokens'
        raise ConfigError(f'task.classes.{name}: token {tok!r} is not in the '
                          f'vocabulary {shown}')
      claim(c, name, vocab.id(tok), tok)
  if (of_token < 0).any():
    names.append('other')
    of_token[of_token < 0] = len(names) - 1
  return tuple(names), of_token


def shuffled_index(key, i, n: int):
  """Entries i of a pseudo-random permutation of range(n) chosen by `key`.

  A minibatch needs b entries of the epoch's shuffle, not all n: materialising
  jax.random.permutation(n) each step costs O(n log n) (about 60 ms for
  n = 100,000 on a CPU, far more than a tiny model's step). Instead a Feistel
  network permutes [0, 4^h) with 4^h >= n, and values >= n are encrypted again
  (cycle walking), which keeps it a permutation of [0, n). Feistel networks
  reach only part of the permutations of tiny domains (hence EXACT_SHUFFLE_ROWS);
  with 8 rounds, where each of 20,000 keys sends a row already passes a
  chi-square test of uniformity at n = 10 and n = 1000.
  """
  half = max(1, math.ceil(math.log2(max(n, 2)) / 2))  # bits per Feistel half
  mask = jnp.uint32((1 << half) - 1)
  round_keys = jax.random.bits(key, (FEISTEL_ROUNDS,), jnp.uint32)

  def mix(x):  # lowbias32 integer hash: each input bit flips about half the output
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)

  def encrypt(x):
    left, right = x >> half, x & mask
    for r in range(FEISTEL_ROUNDS):
      left, right = right, left ^ (mix(right ^ round_keys[r]) & mask)
    return (left << half) | right

  x = encrypt(jnp.asarray(i, jnp.uint32))
  x = jax.lax.while_loop(lambda x: (x >= n).any(),
                         lambda x: jnp.where(x >= n, encrypt(x), x), x)
  return x.astype(jnp.int32)
