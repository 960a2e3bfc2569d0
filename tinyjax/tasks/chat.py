"""Chat: JSONL conversations rendered into a chat layout with special tokens.

GuppyLM's layout (../shared/specs/guppylm.md section 3), one row per
conversation:

  <|im_start|>user\\n{input}<|im_end|>\\n<|im_start|>assistant\\n{output}<|im_end|>

encoded by a byte-level BPE (tinyjax.tasks.tokenizer; trained on the
formatted strings of `train_on`, or a published tokenizer.json named by
`tokenizer.path`), cut to `context + 1` tokens and right-padded with the pad
token (id 0) to the longest row. x = ids[:-1], y = ids[1:]; every target but
padding is trained (no prompt masking, as the original). Per-class losses by
where a target sits: `user` (the user's text), `assistant` (the reply: what a
chat model is judged on), `special` (the three special tokens), `format` (the
role words and the newline between turns).

The eval split `test` is the first `eval_rows` conversations of the test file
in file order (the original: the first 50 batches of 32 = 1,600 rows). Prompts
are user messages; generation puts them in the inference layout
`<|im_start|>user\\n{msg}<|im_end|>\\n<|im_start|>assistant\\n` and stops at
`<|im_end|>`.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from tinyjax.tasks import cache as task_cache
from tinyjax.tasks import files
from tinyjax.tasks import tokenizer as tokenizer_lib
from tinyjax.tasks.base import ConfigError, Split, Task, make_split

CLASSES = ('user', 'assistant', 'special', 'format')
START, END = '<|im_start|>', '<|im_end|>'
TEMPLATE = f'{START}user\n{{prompt}}{END}\n{START}assistant\n'


def read_conversations(path: str, field: str, sha256: str = '') -> list[dict]:
  """The JSONL rows; ConfigError naming the line that is not a conversation
  (a JSON object with string 'input' and 'output')."""
  rows = []
  for n, line in enumerate(files.read_text(path, field, sha256).splitlines(), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise ConfigError(f'{field}: {path!r} line {n} is not JSON ({e.msg})') from None
    if not (isinstance(row, dict) and isinstance(row.get('input'), str)
            and isinstance(row.get('output'), str)):
      raise ConfigError(f'{field}: {path!r} line {n} is not a conversation: need a JSON '
                        'object with string "input" and "output"')
    rows.append(row)
  if not rows:
    raise ConfigError(f'{field}: {path!r} has no conversations')
  return rows


def render(row: dict) -> str:
  return f"{START}user\n{row['input']}{END}\n{START}assistant\n{row['output']}{END}"


def encode_rows(tok, rows: list[dict]) -> list[tuple[list[int], list[int]]]:
  """(token ids, class index per token) of each conversation. The specials
  split the string before byte-level pre-tokenization, so encoding piece by
  piece gives the ids of the whole rendered string (tested against the
  original's train[0]); the texts are encoded as batches."""
  start, end = tok.id(START), tok.id(END)
  u, a, s, f = (CLASSES.index(c) for c in ('user', 'assistant', 'special', 'format'))
  user, nl, assistant = tok.encode('user\n'), tok.encode('\n'), tok.encode('assistant\n')
  ins = [e.ids for e in tok.hf.encode_batch([r['input'] for r in rows])]
  outs = [e.ids for e in tok.hf.encode_batch([r['output'] for r in rows])]
  out = []
  for i, o in zip(ins, outs):
    pieces = [([start], s), (user, f), (i, u), ([end], s), (nl, f), ([start], s),
              (assistant, f), (o, a), ([end], s)]
    out.append(([t for p, _ in pieces for t in p], [c for p, c in pieces for _ in p]))
  return out


def chat_task(cfg, tokenizer_path: str | None = None) -> Task:
  """cfg: path, sha256, test_path, test_sha256, tokenizer (kind bpe, vocab_size,
  min_frequency, special_tokens, eos; path: a tokenizer.json to use as is),
  train_on ('train' or 'train+test'), context, eval_rows, prompts."""
  # The tokenizer and the encoded rows: from tinyjax.tasks.cache when these
  # files, fields and code were built before (nothing is read or trained).
  saved = tokenizer_path if tokenizer_path and os.path.exists(tokenizer_path) else ''
  path = cfg.tokenizer.get('path', '')
  published = files.resolve(path) if path and not saved else ''
  used = saved or published
  key = task_cache.key('chat', {
      'sha256': cfg.get('sha256', ''), 'test_sha256': cfg.get('test_sha256', ''),
      'tokenizer': task_cache.plain(cfg.tokenizer), 'train_on': cfg.get('train_on', ''),
      'context': cfg.context, 'eval_rows': cfg.eval_rows,
      'tokenizer_from': 'workdir' if saved else 'path' if published else 'trained'},
      {'path': cfg.path, 'test_path': cfg.test_path,
       **({'tokenizer': used, 'tokenizer_meta': tokenizer_lib.meta_path(used)} if used else {})})
  hit = task_cache.load(key)
  if hit is not None:
    tok, arrays = hit
    train, test = (Split(**{f.name: arrays[f'{name}.{f.name}'] for f in dataclasses.fields(Split)})
                   for name in ('train', 'test'))
  else:
    tok, train, test = _build(cfg, saved)
    task_cache.store(key, tok, {f'{name}.{k}': x for name, sp in (('train', train), ('test', test))
                                for k, x in sp.arrays().items()})
  return Task(vocab=tok, train=train, evals={'test': test},
              class_names=CLASSES, prompts=tuple(cfg.prompts), expected={},
              prompt_template=TEMPLATE)


def _build(cfg, tokenizer_path: str):
  """The tokenizer (the saved one at tokenizer_path, the published one
  cfg.tokenizer.path names, or trained) and the train and test splits."""
  train_rows = read_conversations(cfg.path, 'task.path', cfg.get('sha256', ''))
  test_rows = read_conversations(cfg.test_path, 'task.test_path', cfg.get('test_sha256', ''))
  if tokenizer_path:
    tok = tokenizer_lib.Tokenizer.load(tokenizer_path)
  elif cfg.tokenizer.get('path', ''):
    tok = tokenizer_lib.Tokenizer.load(files.resolve(cfg.tokenizer.path), cfg.tokenizer.eos)
  else:
    if cfg.train_on not in ('train', 'train+test'):
      raise ConfigError(f"task.train_on: {cfg.train_on!r} is not allowed; use 'train' or "
                        "'train+test'")
    rows = train_rows + (test_rows if cfg.train_on == 'train+test' else [])
    tok = tokenizer_lib.train(cfg.tokenizer, '\n'.join(map(render, rows)))
  for special in (START, END):
    if tok.hf.token_to_id(special) is None:
      raise ConfigError(f'task.tokenizer: {special!r} is not a token of the tokenizer')
  if not 0 < cfg.eval_rows <= len(test_rows):
    raise ConfigError(f'task.eval_rows: {cfg.eval_rows} is not allowed; use 1..{len(test_rows)}')
  pad_class = np.full(len(tok), -1, np.int32)  # classes come per position below

  def split(rows):
    enc = encode_rows(tok, rows)
    lines = [ids[:cfg.context + 1] for ids, _ in enc]
    sp = make_split(tok, lines, pad_class)
    cls = np.full(sp.y_NxT.shape, -1, np.int32)
    for r, (ids, c) in enumerate(enc):
      n = min(len(ids), cfg.context + 1) - 1  # targets of this row
      cls[r, :n] = c[1:n + 1]
    sp.cls_NxT = cls
    return sp

  return tok, split(train_rows), split(test_rows[:cfg.eval_rows])
