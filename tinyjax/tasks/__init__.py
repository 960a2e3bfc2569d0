"""Tasks: what a run trains on, as a vocabulary plus batch sources on the device.

  base.py       Task, the two batch sources (Split: fixed rows; Stream: windows
                of a token stream), token classes, ConfigError
  tokenizer.py  Vocab (fixed token list) and Tokenizer (HF char / word / bpe)
  synthetic.py  repeat (Timmy), modular (grokking), addition (babyLLM, addy),
                induction (repeated random tokens)
  corpus.py     corpus: language modelling on a text file (tiny-llm, Pillmish)
  chat.py       chat: JSONL conversations in a chat layout (GuppyLM)
  cache.py      corpus and chat's tokenizer and encoded arrays, kept beside the
                compilation cache: a rerun reads them back

`build(config.task)` resolves `task.name` (tinyjax.extend: a built-in name from
TASKS, or your own 'package.module:attr' / 'file.py:attr') and checks what it
returns.
"""

from tinyjax.tasks.base import (ConfigError, Split, Stream, Task, make_split,  # noqa: F401
                                shuffled_index, token_classes)
from tinyjax.tasks.chat import chat_task
from tinyjax.tasks.corpus import corpus_task
from tinyjax.tasks.synthetic import (MODULAR_OPS, addition_task, induction_task,  # noqa: F401
                                     modular_pairs, modular_split, modular_task,
                                     repeat_task)
from tinyjax.tasks.tokenizer import Tokenizer, Vocab  # noqa: F401

TASKS = {'repeat': repeat_task, 'modular': modular_task, 'addition': addition_task,
         'induction': induction_task, 'corpus': corpus_task, 'chat': chat_task}


def build(cfg, tokenizer_path: str | None = None) -> Task:
  """The task `cfg.name`; a task that trains a tokenizer (it takes
  `tokenizer_path`: corpus, chat) loads it from there if it exists."""
  from tinyjax import extend
  fn = extend.resolve('task', cfg.name, TASKS)
  task = fn(cfg, tokenizer_path) if extend.accepts(fn, 'tokenizer_path') else fn(cfg)
  extend.check_task(task, cfg.name)
  return task
