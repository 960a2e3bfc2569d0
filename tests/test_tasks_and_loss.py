"""The repeat task and the per-class metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinyjax import loss as loss_lib
from tinyjax import tasks


def test_timmy_task_has_the_spec_layout(timmy):
  task = tasks.build(timmy.task)
  assert task.vocab.tokens == ('red', 'orange', 'yellow', 'green', 'blue', 'violet',
                               ' ', '<EOS>')
  assert task.train.x_NxT.shape == (5, 9)
  assert task.train_lines[0] == 'red red red red red<EOS>'
  assert 'violet' not in ''.join(task.train_lines)
  counts = {n: int((task.train.cls_NxT == i).sum()) for i, n in enumerate(task.class_names)}
  assert counts == {'content': 20, 'space': 20, 'eos': 5}
  assert task.train.mask_NxT.sum() == 45
  assert task.expected['violet'] == ' violet violet violet violet'


def test_vocab_encode_decode_and_oov():
  v = tasks.Vocab(('red', ' ', '<EOS>'), eos='<EOS>')
  assert v.encode('red red<EOS>') == [0, 1, 0, 2]
  assert v.decode([0, 1, 0, 2, 0]) == 'red red'
  with pytest.raises(tasks.ConfigError, match="'purple'"):
    v.encode('red purple')


def test_classes_must_not_overlap(timmy):
  with timmy.unlocked():
    timmy.task.classes = {'content': ('red', ' '), 'space': (' ',)}
  with pytest.raises(tasks.ConfigError, match='two classes'):
    tasks.build(timmy.task)


def test_unclassified_targets_go_to_other(timmy):
  with timmy.unlocked():
    timmy.task.classes = {'space': (' ',)}
  task = tasks.build(timmy.task)
  assert task.class_names == ('space', 'other')
  assert (task.train.cls_NxT >= 0).sum() == 45


def test_held_out_token_must_be_a_task_token(timmy):
  with timmy.unlocked():
    timmy.task.held_out = ('purple',)
  with pytest.raises(tasks.ConfigError, match='task.held_out'):
    tasks.build(timmy.task)


def test_per_class_losses_recombine_to_the_total(timmy):
  task = tasks.build(timmy.task)
  batch = {k: jnp.asarray(v) for k, v in task.train.arrays().items()}
  logits = jax.random.normal(jax.random.key(0), (5, 9, 8)) * 3
  m = loss_lib.lm_metrics(logits, batch, task.class_names, {})
  n = {c: float((task.train.cls_NxT == i).sum()) for i, c in enumerate(task.class_names)}
  recombined = sum(n[c] * float(m[f'loss/{c}']) for c in n) / sum(n.values())
  assert abs(recombined - float(m['loss'])) < 1e-6
  acc = sum(n[c] * float(m[f'accuracy/{c}']) for c in n) / sum(n.values())
  assert abs(acc - float(m['accuracy'])) < 1e-6


def test_masked_mean_of_nothing_is_nan():
  assert np.isnan(float(loss_lib.masked_mean(jnp.ones(3), jnp.zeros(3))))
