"""Tasks: what a run trains on, as a vocabulary plus batch sources on the device.

  base.py       Task, the two batch sources (Split: fixed rows; Stream: windows
                of a token stream), token classes, ConfigError
  tokenizer.py  Vocab (fixed token list) and Tokenizer (HF char / word / bpe)
  synthetic.py  repeat (Timmy), modular (grokking), addition (babyLLM, addy),
                induction (repeated random tokens)
  corpus.py     corpus: language modelling on a text file (tiny-llm, Pillmish)
  chat.py       chat: JSONL conversations in a chat layout (GuppyLM)

`build(config.task)` picks the task by name from TASKS.
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
TEXT_TASKS = ('corpus', 'chat')  # tasks with a trained tokenizer (saved in the workdir)


def build(cfg, tokenizer_path: str | None = None) -> Task:
  """The task `cfg.name`; text tasks load `tokenizer_path` if it exists."""
  if cfg.name not in TASKS:
    raise ConfigError(f'task.name: {cfg.name!r} is not a known task; '
                      f'choose one of {sorted(TASKS)}')
  if cfg.name in TEXT_TASKS:
    return TASKS[cfg.name](cfg, tokenizer_path)
  return TASKS[cfg.name](cfg)
