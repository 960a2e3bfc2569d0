"""The chat task (GuppyLM): layout, ids, classes, bad input, the model and schedule."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from tinyjax import optimizer as optimizer_lib
from tinyjax import program
from tinyjax import train
from tinyjax.tasks import ConfigError
from tinyjax.tasks import chat


def _cfg(arg='smoke'):
  from configs import guppylm
  c = guppylm.get_config(arg)
  with c.unlocked():
    c.task.tokenizer.path = 'tinyjax/data/guppylm_tokenizer.json.xz'  # the published one
  return c


def test_the_first_training_conversation_gives_the_originals_ids_and_classes():
  task = train.build_task(_cfg())
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
