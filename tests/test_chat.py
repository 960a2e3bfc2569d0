"""The chat task (GuppyLM): layout, ids, classes, bad input, the model and schedule."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import lenses_off
from tinyjax import optimizer as optimizer_lib
from tinyjax import program
from tinyjax import train
from tinyjax.tasks import ConfigError
from tinyjax.tasks import chat


def _cfg(arg='smoke'):
  from configs import guppylm
  c = lenses_off(guppylm.get_config(arg))
  with c.unlocked():
    c.task.tokenizer.path = 'tinyjax/data/guppylm_tokenizer.json.xz'  # the published one
  return c


def test_the_first_training_conversation_gives_the_originals_ids_and_classes():
  task = train.build_task(_cfg(None))
  want = [1, 88, 64, 43, 410, 83, 834, 2, 64, 1, 89, 64, 149, 133, 438, 553, 277, 7, 77, 198,
          657, 161, 668, 7, 2]  # spec section 3: train[0]
  x, y = task.train.x_NxT[0], task.train.y_NxT[0]
  assert list(x[:24]) == want[:-1] and list(y[:24]) == want[1:]
  assert (task.train.mask_NxT[0, :24] == 1).all() and (task.train.mask_NxT[0, 24:] == 0).all()
  names = [task.class_names[c] for c in task.train.cls_NxT[0, :24]]
  assert names[:3] == ['format', 'format', 'user']     # 'user', '\n', then 'i need a heater'
  assert names[-1] == 'special' and names[-2] == 'assistant'  # '.', then <|im_end|>
  assert task.class_names == ('user', 'assistant', 'special', 'format')


def test_a_prompt_is_put_in_the_inference_layout():
  c = _cfg()
  prog = program.Program(c, train.build_task(c))
  enc = prog.encode_prompts(['hi guppy'])
  assert enc['tokens'][0].tolist() == [1, 88, 64, 779, 278, 2, 64, 1, 89, 64]
  assert prog.stop_ids == (2,)


@pytest.mark.parametrize('line,needle', [
    ('{"input": "hi", "output": 3}', 'line 2 is not a conversation'),
    ('["hi", "there"]', 'line 2 is not a conversation'),
    ('{"input": "hi", ', 'line 2 is not JSON'),
])
def test_a_line_that_is_not_a_conversation_is_named(tmp_path, line, needle):
  path = tmp_path / 'train.jsonl'
  path.write_text('{"input": "hi guppy", "output": "hello."}\n' + line + '\n')
  c = _cfg()
  with c.unlocked():
    c.task.path, c.task.sha256 = str(path), ''
  with pytest.raises(ConfigError, match=needle) as e:
    train.train_and_evaluate(c, str(tmp_path / 'w'), progress=False)
  assert 'task.path' in str(e.value) and not (tmp_path / 'w').exists()


def test_a_model_vocabulary_smaller_than_the_tokenizer_is_refused():
  c = _cfg()
  with c.unlocked():
    c.model.vocab_size = 2000
  with pytest.raises(ConfigError, match='model.vocab_size: 2000'):
    train.build_task(c)


def test_guppylm_has_exactly_8726016_parameters():
  c = _cfg(None)
  assert program.Program(c, train.build_task(c)).num_params == 8_726_016


def test_the_schedule_warms_up_then_decays_to_a_tenth():
  c = _cfg(None).optimizer
  lr = optimizer_lib.schedule(c, 3e-4)
  got = [float(lr(jnp.asarray(s))) for s in (0, 100, 200, 5100, 10000, 12000)]
  np.testing.assert_allclose(got, [0.0, 1.5e-4, 3e-4, 1.65e-4, 3e-5, 3e-5], rtol=1e-5)


def test_piped_chat_answers_each_line_once_until_quit(chat_workdir):
  import subprocess
  import sys
  from tests.conftest import ROOT
  r = subprocess.run([sys.executable, '-m', 'tinyjax.chat', '--workdir', chat_workdir,
                      '--max_new_tokens', '12'], input='hi guppy\n\nwhat is the internet\n'
                     '/quit\nnever answered\n', capture_output=True, text=True, cwd=ROOT,
                     timeout=300)
  assert r.returncode == 0, r.stderr
  assert len(r.stdout.splitlines()) == 2  # the empty line skipped, nothing after /quit


def test_chat_streams_what_it_returns_and_keeps_history_within_the_context(chat_workdir):
  from tinyjax import chat as chat_cli
  from tinyjax import sampler
  bot = chat_cli.Chat(chat_workdir, settings=sampler.Settings(0.7, 50), max_new_tokens=12)
  seen = []
  reply = bot.answer('hi guppy', 0, seen.append)
  assert seen and seen[-1] == reply  # the streamed text ends as the reply
  assert bot.answer('hi guppy', 0) == reply and bot.answer('hi guppy', 1) != reply
  for i in range(12):
    bot.turns.append((f'message {i} about the tank and the water', 'blub ' * 8))
  ids = bot.prompt_ids('hi guppy')
  assert len(ids) <= bot.context - bot.n_new
  assert ids[-10:] == bot.vocab.encode(chat.TEMPLATE.replace('{prompt}', 'hi guppy'))[-10:]
  assert 'message 11' in bot.vocab.decode(ids, False) and 'message 0 ' not in \
      bot.vocab.decode(ids, False)


def test_chat_without_a_checkpoint_or_on_another_task_exits_2(tmp_path):
  from tests.conftest import run_cli
  r = run_cli('-m', 'tinyjax.chat', '--workdir', str(tmp_path))
  assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'config.json' in r.stderr
