"""Language modelling on a text corpus: windows of one token stream.

The corpus is read once (plain text, or .xz / .gz / .bz2), its first
`train_fraction` of characters trains the tokenizer (word or bpe; a char
vocabulary is the whole file's characters; see tinyjax.tasks.tokenizer), and the whole text is encoded once into a stream that
is cut at the same fraction of its tokens: train = the first part, val = the
rest (tiny-llm / nanoGPT: 90% / 10%); or, with `val_path`, train on the whole
file and validate on another (Pillmish: TinyStories train / validation
excerpts). Both live on the device; each training
step draws `train.batch_size` random windows of `block_size + 1` tokens from the
run's key inside the jitted step (tinyjax.tasks.base.Stream).

Evaluation, as tiny-llm's: the mean loss over `eval_iters` random batches of
`eval_batch_size` windows of each split, written as `train/loss` (the estimate
on the training stream) and `val/loss`, with per-class losses and accuracies.
"""

from __future__ import annotations

import os

from tinyjax.tasks import cache as task_cache
from tinyjax.tasks import tokenizer as tokenizer_lib
from tinyjax.tasks.base import ConfigError, Stream, Task, token_classes
from tinyjax.tasks.files import read_text


def corpus_task(cfg, tokenizer_path: str | None = None) -> Task:
  """cfg: path, sha256, val_path and val_sha256 (optional), tokenizer (kind,
  ...), train_fraction, block_size, eval_iters, eval_batch_size, classes (name
  -> character set or tokens), prompts. tokenizer_path: a saved tokenizer.json
  to use instead of training."""
  val_path = cfg.get('val_path', '')
  if not val_path and not 0.0 < cfg.train_fraction < 1.0:
    raise ConfigError(f'task.train_fraction: {cfg.train_fraction} is not allowed; '
                      'use a value in (0, 1)')
  for field in ('block_size', 'eval_iters', 'eval_batch_size'):
    if cfg[field] < 1:
      raise ConfigError(f'task.{field}: {cfg[field]} is not allowed; use >= 1')
  # The tokenizer and the encoded streams: from tinyjax.tasks.cache when this
  # corpus, tokenizer and code were built before (the corpus is not even read).
  saved = bool(tokenizer_path and os.path.exists(tokenizer_path))
  key = task_cache.key('corpus', {
      'sha256': cfg.get('sha256', ''), 'val_sha256': cfg.get('val_sha256', ''),
      'has_val': bool(val_path), 'train_fraction': cfg.train_fraction,
      'tokenizer': task_cache.plain(cfg.tokenizer), 'saved_tokenizer': saved},
      {'path': cfg.path, 'val_path': val_path,
       **({'tokenizer': tokenizer_path, 'tokenizer_meta': tokenizer_lib.meta_path(tokenizer_path)}
          if saved else {})})
  hit = task_cache.load(key)
  if hit is not None:
    tok, arrays = hit
    splits = (('train', arrays['train']), ('val', arrays['val']))
  else:
    tok, splits = _encode(cfg, val_path, tokenizer_path if saved else None)
    task_cache.store(key, tok, dict(splits))
  t = cfg.block_size
  for name, part in splits:
    if len(part) < t + 1:
      raise ConfigError(f'task.path: {cfg.path!r} gives a {name} split of {len(part)} tokens, '
                        f'shorter than task.block_size + 1 = {t + 1}')
  names, of_token = token_classes(tok, dict(cfg.classes))
  sources = {name: Stream(part, of_token, t, cfg.eval_iters, cfg.eval_batch_size)
             for name, part in splits}
  return Task(vocab=tok, train=sources['train'], evals=dict(sources),
              class_names=names, prompts=tuple(cfg.prompts), expected={})


def _encode(cfg, val_path: str, tokenizer_path: str | None):
  """The tokenizer (trained, or the saved one at tokenizer_path) and the
  (name, token ids) of the train and val splits."""
  text = read_text(cfg.path, sha256=cfg.get('sha256', ''))
  cut = len(text) if val_path else int(cfg.train_fraction * len(text))
  if tokenizer_path:
    tok = tokenizer_lib.Tokenizer.load(tokenizer_path)
  else:
    # char: the whole file's characters (tiny-llm's sorted(set(text))); word
    # and bpe learn from the training text only.
    tok = tokenizer_lib.train(cfg.tokenizer, text if cfg.tokenizer.kind == 'char' else text[:cut])
  ids = tok.encode_array(text)
  if val_path:
    val = tok.encode_array(read_text(val_path, 'task.val_path', cfg.get('val_sha256', '')))
    return tok, (('train', ids), ('val', val))
  cut = int(cfg.train_fraction * len(ids))
  return tok, (('train', ids[:cut]), ('val', ids[cut:]))
