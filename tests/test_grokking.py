"""The modular-arithmetic task, Grokfast-EMA, and a short grokking-config run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import grokking_small
from tinyjax import grokfast
from tinyjax import optimizer as optimizer_lib
from tinyjax import program as program_lib
from tinyjax import tasks
from tinyjax import train
from tinyjax import writer


def _task_cfg(**kw):
  cfg = grokking_small.get_config().task
  with cfg.unlocked():
    cfg.update({'p': 11, **kw})
  return cfg


def _pairs(split, show_op):
  """(a, b) of every row, read back from the input tokens."""
  b_col = 2 if show_op else 1
  return {(int(r[0]), int(r[b_col])) for r in split.x_NxT}


@pytest.mark.parametrize('show_op', [False, True])
def test_split_is_disjoint_seeded_and_covers_every_pair(show_op):
  task = tasks.build(_task_cfg(show_op=show_op, split_seed=3))
  train_p, test_p = _pairs(task.train, show_op), _pairs(task.evals['test'], show_op)
  assert len(train_p) == task.train.num_rows == int(0.4 * 121)  # no duplicates
  assert not train_p & test_p
  assert train_p | test_p == {(a, b) for a in range(11) for b in range(11)}
  same = tasks.build(_task_cfg(show_op=show_op, split_seed=3))
  np.testing.assert_array_equal(same.train.x_NxT, task.train.x_NxT)
  other = tasks.build(_task_cfg(show_op=show_op, split_seed=4))
  assert _pairs(other.train, show_op) != train_p


@pytest.mark.parametrize('show_op,row_len', [(False, 4), (True, 5)])
def test_only_the_answer_is_scored(show_op, row_len):
  task = tasks.build(_task_cfg(show_op=show_op, op='-'))
  s = task.train
  assert s.x_NxT.shape[1] == row_len - 1
  want = np.zeros(row_len - 1)
  want[-1] = 1.0  # the target predicted at '=' only; a, op, b are context
  np.testing.assert_array_equal(s.mask_NxT, np.broadcast_to(want, s.mask_NxT.shape))
  eq = task.vocab.id('=')
  assert (s.x_NxT[:, -1] == eq).all()
  b_col = 2 if show_op else 1
  np.testing.assert_array_equal(s.y_NxT[:, -1], (s.x_NxT[:, 0] - s.x_NxT[:, b_col]) % 11)
  assert (s.cls_NxT[:, :-1] == -1).all() and (s.cls_NxT[:, -1] == 0).all()
  if show_op:
    assert task.vocab.tokens[11:] == ('-', '=') and (s.x_NxT[:, 1] == 11).all()
    assert task.vocab.encode('10-3=') == [10, 11, 3, 12]  # unambiguous text
  else:
    assert task.vocab.tokens[11:] == ('=',)


def test_division_uses_the_modular_inverse_and_excludes_zero():
  task = tasks.build(_task_cfg(op='/', show_op=True, train_fraction=0.5))
  rows = np.concatenate([task.train.x_NxT, task.evals['test'].x_NxT])
  ys = np.concatenate([task.train.y_NxT, task.evals['test'].y_NxT])[:, -1]
  a, b = rows[:, 0], rows[:, 2]
  assert len(rows) == 11 * 10 and (b != 0).all()
  np.testing.assert_array_equal((ys * b) % 11, a)  # c = a * b^-1  <=>  c * b = a
  assert ys[(a == 1) & (b == 2)][0] == 6  # 2^-1 = 6 (mod 11)
  with pytest.raises(tasks.ConfigError, match='not prime'):
    tasks.build(_task_cfg(op='/', p=12))
  with pytest.raises(tasks.ConfigError, match='task.op'):
    tasks.build(_task_cfg(op='^'))


def test_grokfast_ema_matches_a_hand_computation():
  # alpha 0.5, lambda 2; h_1 = g_1, h_t = 0.5 h_{t-1} + 0.5 g_t, out = g + 2 h.
  gs = [np.array([1.0, -2.0]), np.array([3.0, 0.0]), np.array([-1.0, 4.0])]
  want = [[3.0, -6.0],   # h = [1, -2]
          [7.0, -2.0],   # h = [2, -1]
          [0.0, 7.0]]    # h = [0.5, 1.5]
  tx = grokfast.ema(jnp.float32(0.5), jnp.float32(2.0))
  state = tx.init({'w': jnp.zeros(2)})
  update = jax.jit(tx.update)
  for g, w in zip(gs, want):
    out, state = update({'w': jnp.asarray(g, jnp.float32)}, state)
    np.testing.assert_array_equal(np.asarray(out['w']), w)
  # lambda = 0 is the raw gradient, exactly.
  tx0 = grokfast.ema(0.98, 0.0)
  s0 = tx0.init({'w': jnp.zeros(2)})
  for g in gs:
    out, s0 = tx0.update({'w': jnp.asarray(g, jnp.float32) / 3}, s0)
    np.testing.assert_array_equal(np.asarray(out['w']), np.float32(g) / 3)


def test_optimizer_chains_grokfast_before_the_optimizer():
  cfg = grokking_small.get_config().optimizer
  with cfg.unlocked():
    cfg.update(name='sgd', lr=1.0, weight_decay=0.0, warmup_steps=0)
  hp = {'lr': 1.0, 'momentum': 0.0, 'weight_decay': 0.0, 'grokfast_alpha': 0.5,
        'grokfast_lambda': 2.0}
  tx = optimizer_lib.make(cfg, hp)
  params = {'w': jnp.zeros(2)}
  state = tx.init(params)
  for g, w in zip(([1.0, -2.0], [3.0, 0.0]), ([3.0, -6.0], [7.0, -2.0])):
    upd, state = tx.update({'w': jnp.asarray(g)}, state, params)
    np.testing.assert_allclose(np.asarray(upd['w']), -np.asarray(w))  # sgd: -lr * g'
  # A config without the Grokfast fields (Timmy) keeps its old hparams and state.
  from configs import timmy
  hp_t = program_lib.base_hparams(timmy.get_config())
  assert 'grokfast_lambda' not in hp_t and 'grokfast_alpha' not in hp_t
  st = optimizer_lib.make(timmy.get_config().optimizer, hp_t).init(params)
  assert not any(isinstance(s, grokfast.GrokfastState)
                 for s in jax.tree.leaves(st, is_leaf=lambda s: isinstance(
                     s, grokfast.GrokfastState)))


def _first_step(rows, metric, op, threshold):
  """The first logged step whose metric meets the condition (None if none)."""
  ops = {'<': lambda a: a < threshold, '>': lambda a: a > threshold,
         '>=': lambda a: a >= threshold}
  return next((r['step'] for r in rows if r[metric] is not None and ops[op](r[metric])), None)


def test_short_run_writes_test_accuracy_and_grokfast_lambda_is_traced(tmp_path):
  cfg = grokking_small.get_config()
  with cfg.unlocked():
    cfg.task.p = 11
    # Every step logged and evaluated: each milestone's step is then known
    # from metrics.jsonl (the first row meeting its condition).
    cfg.train.update(steps=20, chunk_steps=10, log_every=1)
    cfg.eval.every = 1
    cfg.checkpoint.update(every=0, log_spaced=False)
    # lambda = 0 and 2 in one compiled program (a traced hyperparameter).
    cfg.sweep.grid = {'optimizer': {'grokfast_lambda': (0.0, 2.0)}}
    # Two milestones these 20 steps do reach (the config's own two, 99% train
    # and 95% test accuracy, come thousands of steps later: None here).
    cfg.milestones = {**cfg.milestones, 'loss_drop_step': ('loss', '<', 2.2),
                      'first_test_hit_step': ('test/accuracy', '>', 0.05)}
  summary = train.train_and_evaluate(cfg, str(tmp_path), progress=False)
  runs = {r['name']: r for r in summary['runs']}
  assert set(runs) == {'grokfast_lambda=0/seed=0', 'grokfast_lambda=2/seed=0'}
  n_train, n_test = int(0.4 * 121), 121 - int(0.4 * 121)
  for name, run in runs.items():
    rows = writer.read_jsonl(str(tmp_path / name / 'metrics.jsonl'))
    assert [r['step'] for r in rows] == list(range(21))
    for milestone, (metric, op, threshold) in cfg.milestones.items():
      assert run[milestone] == _first_step(rows, metric, op, threshold), (name, milestone)
    assert run['memorization_step'] is None and run['grokking_step'] is None
    assert run['loss_drop_step'] is not None and run['first_test_hit_step'] is not None
    # Accuracies are fractions of the split's rows (one scored token a row).
    for r in rows:
      for k, n in (('accuracy', n_train), ('test/accuracy', n_test)):
        assert abs(r[k] * n - round(r[k] * n)) < 1e-4, (r['step'], k, r[k])
    assert run['final']['test/accuracy'] == rows[-1]['test/accuracy']
  rows = writer.read_jsonl(str(tmp_path / 'grokfast_lambda=0' / 'seed=0' / 'metrics.jsonl'))
  for k in ('loss', 'accuracy', 'test/loss', 'test/accuracy', 'param_norm',
            'param_norm/block0', 'param_norm/embed', 'param_norm/unembed'):
    assert rows[-1][k] is not None, k
  # Same init and data, different lambda: same step-0 metrics, different later.
  rows2 = writer.read_jsonl(str(tmp_path / 'grokfast_lambda=2' / 'seed=0' / 'metrics.jsonl'))
  assert rows2[0]['loss'] == rows[0]['loss']
  assert rows2[-1]['param_norm'] != rows[-1]['param_norm']
  assert json.load(open(tmp_path / 'config.json'))['task']['name'] == 'modular'
