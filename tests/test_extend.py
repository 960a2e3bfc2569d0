"""Your own task, model and lens, defined here and named from a config
(tinyjax.extend), trained as a vmapped sweep through the Python API."""

import os
import shutil

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli
from tinyjax import api
from tinyjax import tasks
from tinyjax.tasks import ConfigError

LETTERS = 'abcdef'


# ------------------------------------------------- the user's three objects ---
def successor_task(cfg):
  """Every rotation of the letters ('abcdef', 'bcdefa', ...): next-letter
  prediction; prompt 'a' should continue 'bcdef'."""
  vocab = tasks.Vocab(tuple(cfg.letters))
  n = len(cfg.letters)
  rows = [[(s + i) % n for i in range(n)] for s in range(n)]
  names, of_token = tasks.token_classes(vocab, {'vowel': ('a', 'e'), 'consonant': tuple('bcdf')})
  expected = {p: cfg.letters[1:] for p in ('a',)}
  return tasks.Task(vocab=vocab, train=tasks.make_split(vocab, rows, of_token), evals={},
                    class_names=names, prompts=('a', 'c'), expected=expected)


class Bigram(nnx.Module):
  """logits = table[token]: the next letter depends on this letter only."""

  def __init__(self, cfg, vocab_size, max_len, *, rngs):
    del max_len
    self.table = nnx.Param(cfg.init_std * jax.random.normal(rngs.params(), (vocab_size,
                                                                            vocab_size)))

  def __call__(self, tokens_BxT):
    return self.table[...][tokens_BxT], {}

  def init_cache(self, batch, size):
    return {'unused': jnp.zeros((batch,), jnp.int32)}

  def decode(self, tokens_BxT, pos_B, cache):
    del pos_B
    return self.table[...][tokens_BxT], cache


def next_prob(x):
  """Mean probability of the right next letter; the table's drift from init."""
  p = jax.nn.softmax(x.logits)
  p_right = jnp.take_along_axis(p, x.batch['y_NxT'][..., None], -1)[..., 0]
  w = x.batch['mask_NxT']
  return {'p_next': (p_right * w).sum() / w.sum(),
          'moved': jnp.linalg.norm(x.params['table'] - x.init_params['table'])}


# Wrong on purpose (bad-input tests).
NOT_CALLABLE = 3


def task_returning_a_dict(cfg):
  return {'train': None}


def task_with_float_tokens(cfg):
  t = successor_task(cfg)
  t.train.x_NxT = t.train.x_NxT.astype(np.float32)
  return t


class NotAModule:
  def __init__(self, cfg, vocab_size, max_len, *, rngs):
    pass


class WrongLogits(Bigram):
  def __call__(self, tokens_BxT):
    return self.table[...][tokens_BxT][..., :2], {}


class NoDecode(nnx.Module):
  def __init__(self, cfg, vocab_size, max_len, *, rngs):
    self.table = nnx.Param(jnp.zeros((vocab_size, vocab_size)))

  def __call__(self, tokens_BxT):
    return self.table[...][tokens_BxT], {}


def vector_lens(x):
  return {'v': jnp.ones(3)}


def int_lens(x):
  return {'n': jnp.int32(1)}


def make_config(steps=60, seeds=4):
  """A complete config naming the objects above by this module's name."""
  me = __name__
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = ml_collections.ConfigDict({'name': f'{me}:successor_task', 'letters': LETTERS})
  c.model = ml_collections.ConfigDict({'name': f'{me}:Bigram', 'init_std': 0.02,
                                       'init_scale': 1.0})
  c.optimizer = ml_collections.ConfigDict(dict(
      name='sgd', lr=2.0, momentum=0.0, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8,
      schedule='constant', warmup_steps=0, decay_steps=0, grad_clip=0.0))
  c.train = ml_collections.ConfigDict(dict(steps=steps, batch_size=0, log_every=1,
                                           chunk_steps=20))
  c.eval = ml_collections.ConfigDict(dict(every=10, track_generations=True, prompts=(),
                                          max_new_tokens=5))
  c.milestones = {'learned_step': (f'lens/next_prob/p_next', '>', 0.5)}
  c.lenses = ml_collections.ConfigDict(dict(
      attention=False, probe=False, copying=False, geometry=False, icl=False, fourier=False,
      extra=(f'{me}:next_prob', 'geometry')))  # a built-in lens, named like ours
  c.checkpoint = ml_collections.ConfigDict(dict(every=20, log_spaced=False, keep=0))
  c.sweep = ml_collections.ConfigDict(dict(seeds=seeds, lrs=(), grid={}))
  return c


# ------------------------------------------------------------------ tests ---
def test_own_task_model_lens_sweep_resumes_bitwise_loads_and_generates(tmp_path):
  cfg = make_config()
  full = api.train(cfg, str(tmp_path / 'a'))
  runs = full.summary['runs']
  assert [r['name'] for r in runs] == [f'seed={s}' for s in range(4)]
  df = full.metrics
  assert sorted(df['seed'].unique()) == [0, 1, 2, 3]
  # The lens is vmapped: one value per run and step, different across seeds.
  at0 = df[df.step == 0]['lens/next_prob/moved']
  assert (at0 == 0).all()
  # The built-in geometry lens through the same door: the same distance.
  np.testing.assert_allclose(df['lens/geometry/dist_init/table'], df['lens/next_prob/moved'],
                             rtol=1e-5)
  assert df[df.step == 10]['lens/next_prob/p_next'].nunique() == 4
  # The milestone on the lens is the first step (checked every step) its value
  # is above 0.5; with log_every = 1 every step's value is in the table.
  for r in runs:
    rows = df[df.run == r['name']]
    first = int(rows[rows['lens/next_prob/p_next'] > 0.5]['step'].min())
    assert r['learned_step'] == first and 0 < first < 60
  # Per-class losses of the user's classes partition the loss.
  assert {'loss/vowel', 'loss/consonant'} <= set(df.columns)

  # Crash after the step-20 checkpoint, then resume: bitwise the same.
  b = tmp_path / 'b'
  api.train(cfg, str(b))
  for d in os.listdir(b / 'checkpoints'):
    if int(d) > 20:
      shutil.rmtree(b / 'checkpoints' / d)
  os.remove(b / 'summary.json')
  resumed = api.train(cfg, str(b))
  assert resumed.summary == full.summary
  pd.testing.assert_frame_equal(resumed.metrics, df)
  assert (open(b / 'seed=3' / 'metrics.jsonl').read()
          == open(tmp_path / 'a' / 'seed=3' / 'metrics.jsonl').read())

  # Generation: the summary's greedy continuations, and api.generate per run.
  assert runs[0]['generations'] == {'a': 'bcdef', 'c': 'defab'}
  assert runs[0]['generation_correct'] == {'a': True}
  assert api.generate(str(b), ['e'], run='seed=2') == {'e': 'fabcd'}


@pytest.mark.parametrize('field,value,needle', [
    ('task.name', 'no_such_package_xyz.mod:task', "no_such_package_xyz.mod cannot be imported "
     "\\(ModuleNotFoundError"),
    ('task.name', f'{__name__}:no_such_task', 'has no attribute'),
    ('task.name', f'{__name__}:NOT_CALLABLE', 'is a int, not a task \\(task contract'),
    ('task.name', 'missing_file.py:task', 'no such file'),
    ('task.name', 'nosuchtask', "not a known task; choose one of \\['addition'"),
    ('task.name', f'{__name__}:task_returning_a_dict', 'task contract: returned a dict'),
    ('task.name', f'{__name__}:task_with_float_tokens', 'task contract: train.batch\\(\\): '
     'x_NxT is float32\\[6, 5\\]; want int'),
    ('model.name', f'{__name__}:NotAModule', 'model contract: constructing it returned a '
     'NotAModule, not an nnx.Module'),
    ('model.name', f'{__name__}:WrongLogits', 'model contract: logits are float32\\[6, 5, 2\\]; '
     'want float \\[N, T, V\\] = \\[6, 5, 6\\]'),
    ('lenses.extra', (f'{__name__}:vector_lens',), "lens contract: 'v' is float32\\[3\\]"),
    ('lenses.extra', (f'{__name__}:int_lens',), "lens contract: 'n' is int32\\[\\]"),
    ('lenses.extra', (f'{__name__}:next_prob', f'{__name__}:next_prob'), 'two lenses named'),
])
def test_broken_contract_is_one_line_and_nothing_is_written(tmp_path, field, value, needle):
  cfg = make_config(steps=5, seeds=2)
  section, leaf = field.split('.')
  with cfg.unlocked():
    cfg[section][leaf] = value
  w = tmp_path / 'w'
  with pytest.raises(ConfigError, match=needle) as e:
    api.train(cfg, str(w))
  assert '\n' not in str(e.value)
  assert not w.exists()


def test_a_model_without_decode_trains_and_generate_and_peek_say_why_not(tmp_path):
  cfg = make_config(steps=5, seeds=0)
  with cfg.unlocked():
    cfg.model.name = f'{__name__}:NoDecode'
    cfg.eval.track_generations = False
  w = tmp_path / 'w'
  r = api.train(cfg, str(w))
  assert r.summary['runs'][0]['generations'] == {}
  with pytest.raises(ConfigError, match='model contract: it has no init_cache/decode'):
    api.generate(str(w), ['a'])
  from tinyjax import peek
  with pytest.raises(ConfigError, match='model contract: it has no init_cache/decode, so peek'):
    peek.export(str(w), str(tmp_path / 'peek'), probe='abc', predict='a')
  assert not (tmp_path / 'peek').exists()


def test_peek_refuses_a_model_without_token_embeddings_before_writing(tmp_path):
  w = tmp_path / 'w'
  api.train(make_config(steps=5, seeds=0), str(w))
  from tinyjax import peek
  with pytest.raises(ConfigError, match="peek exports a token embedding table .an nnx.Embed"):
    peek.export(str(w), str(tmp_path / 'peek'), probe='abc', predict='a')
  assert not (tmp_path / 'peek').exists()


LENS_FILE = '''
import jax.numpy as jnp

def table_size(x):
  return {'n': jnp.asarray(x.params['table'].size)}  # int: breaks the contract
'''

CONFIG_FILE = '''
from tests.test_extend import make_config

def get_config(arg=None):
  c = make_config(steps=5, seeds=0)
  c.lenses.extra = ('lenses/mine.py:table_size',)  # relative to this file
  return c
'''


def test_cli_resolves_files_next_to_the_config_and_refuses_a_broken_lens(tmp_path):
  (tmp_path / 'lenses').mkdir()
  (tmp_path / 'lenses' / 'mine.py').write_text(LENS_FILE)
  (tmp_path / 'config.py').write_text(CONFIG_FILE)
  w = tmp_path / 'w'
  # api.load_config resolves the spec against the config's directory too.
  cfg = api.load_config(str(tmp_path / 'config.py'))
  assert cfg.lenses.extra == (str(tmp_path / 'lenses' / 'mine.py') + ':table_size',)
  r = run_cli('-m', 'tinyjax.run', '--config', str(tmp_path / 'config.py'), '--workdir', str(w))
  assert r.returncode == 2, r.stderr
  err = r.stderr.strip().splitlines()
  assert err == [f"tinyjax: error: lenses.extra 'table_size': lens contract: 'n' is int32[]; "
                 'a lens returns float scalars (shape ())']
  assert not w.exists()


def test_load_config_applies_overrides_and_names_a_bad_field():
  cfg = api.load_config('configs/timmy.py:smoke', {'train.steps': 7, 'sweep.seeds': 2})
  assert (cfg.train.steps, cfg.sweep.seeds, cfg.task.name) == (7, 2, 'repeat')
  with pytest.raises(ConfigError, match="overrides: 'train.stpes': no such config field"):
    api.load_config('configs/timmy.py', {'train.stpes': 7})
  with pytest.raises(ConfigError, match='could not be loaded .ValueError: unknown config variant'):
    api.load_config('configs/timmy.py:nope')
