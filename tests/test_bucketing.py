"""train.bucket_lengths: unlogged steps on batches cut to a length bucket."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinyjax import api
from tinyjax import program as program_lib
from tinyjax import sweep as sweep_lib
from tinyjax import train
from tinyjax.tasks import ConfigError


_TASKS = {}  # spec -> task (the fields set below do not change the task)


def _program(spec, **fields):
  c = api.load_config(spec)
  with c.unlocked():
    for path, value in fields.items():
      section, name = path.split('.')
      c[section][name] = value
  g = sweep_lib.expand(c)[0]
  if spec not in _TASKS:
    _TASKS[spec] = train.build_task(g.config)
  task = _TASKS[spec]
  return (program_lib.Program(g.config, task),
          program_lib.hparam_arrays([r['hparams'] for r in g.runs]))


def _used(prog, data, hp, step):
  b = prog._batch(data['train'], jax.tree.map(lambda x: x[0], hp), step)
  return int(((b['valid_NxT'] > 0) | (b['mask_NxT'] > 0)).sum(-1).max())


def test_bucketed_steps_equal_full_length_steps():
  # GuppyLM's smoke rows are padded to 55; these batches' longest rows are 30-43.
  full, hp = _program('configs/guppylm.py:smoke', **{'model.dropout': 0.0})
  cut, _ = _program('configs/guppylm.py:smoke', **{'model.dropout': 0.0,
                                                    'train.bucket_lengths': (30, 36, 40, 44)})
  assert cut.buckets == (30, 36, 40, 44, full.task.train.seq_len) and full.buckets == ()
  data = jax.device_put(full.data)
  used = [_used(full, data, hp, s) for s in range(1, 6)]
  assert max(used) <= 44 < full.task.train.seq_len  # every step runs cut
  state = full.init(hp)
  def unlogged(prog):  # the chunk's step, not logged (its row passed through)
    row = jax.eval_shape(jax.vmap(lambda st, h: prog._step_run(st, h, data, 0)), state, hp)[1]
    row = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), row)
    return jax.jit(lambda st, h, d, s: prog._v_steps()(st, row, h, d, s, False, True)[0])
  a, b = unlogged(full), unlogged(cut)
  too_short = jax.jit(jax.vmap(lambda st, h, d, s: full._step_run(st, h, d, s, False, 10)[0],
                               in_axes=(0, 0, None, None)))
  sa = sb = sc = state
  for s in range(1, 6):
    sa, sb, sc = a(sa, hp, data, s), b(sb, hp, data, s), too_short(sc, hp, data, s)
  diff = lambda x, y: max(jax.tree.leaves(jax.tree.map(
      lambda p, q: float(jnp.max(jnp.abs(p - q))), x['params'], y['params'])))
  assert diff(sa, sb) < 1e-6  # rounding only
  assert diff(sa, sc) > 1e-4  # a cut through real tokens would show


def test_bucket_lengths_refused_where_they_cannot_apply():
  with pytest.raises(ConfigError, match='train.bucket_lengths.*same length'):
    _program('configs/tiny_llm.py:smoke', **{'train.bucket_lengths': (16,)})
  with pytest.raises(ConfigError, match='train.bucket_lengths.*positive integers'):
    _program('configs/guppylm.py:smoke', **{'train.bucket_lengths': (0, 16)})
  prog, _ = _program('configs/guppylm.py:smoke', **{'train.bucket_lengths': (16, 99)})
  assert prog.buckets == (16, prog.task.train.seq_len)  # lengths >= the rows' are dropped
  assert np.all(np.diff(prog.buckets) > 0)
