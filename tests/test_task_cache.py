"""tinyjax.tasks.cache: a text task built from the cache is the task built fresh."""

import dataclasses
import os
import time

import jax
import numpy as np
import pytest

from tests.conftest import lenses_off
from tinyjax import compile_cache
from tinyjax import program
from tinyjax import train
from tinyjax.tasks import cache as task_cache
from tinyjax.tasks import chat
from tinyjax.tasks import corpus
from tinyjax.tasks import tokenizer as tokenizer_lib


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
  """A compilation cache turned on at tmp_path/cache (as enable() leaves it)."""
  folder = tmp_path / 'cache'
  monkeypatch.setattr(compile_cache, '_FOLDER', [str(folder)])
  return folder / task_cache.FOLDER


def _entries(cache_dir):
  return sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []


def _fresh(config, monkeypatch, tokenizer_path=None):
  with monkeypatch.context() as m:
    m.setattr(compile_cache, '_FOLDER', [])  # no cache
    return train.build_task(config, tokenizer_path)


def _refuse(*_, **__):
  raise AssertionError('built, not read from the cache')


def assert_same_task(a, b, tmp_path, config=None):
  """Everything a run reads from a task: the vocabulary (its tokenizer.json
  and metadata in the workdir byte for byte), every array bit for bit with
  its dtype and shape, the rest of the fields, and (given the config) the
  key of the compiled programs (Program.cache_key hashes the task's data)."""
  assert type(a.vocab) is type(b.vocab)
  assert a.vocab.tokens == b.vocab.tokens and a.vocab.eos_id == b.vocab.eos_id
  for name, t in (('a', a), ('b', b)):
    os.makedirs(tmp_path / name, exist_ok=True)
    t.vocab.save(str(tmp_path / name / 'tokenizer.json'))
  for f in ('tokenizer.json', tokenizer_lib.META):
    assert (tmp_path / 'a' / f).read_bytes() == (tmp_path / 'b' / f).read_bytes()
  sources = lambda t: [('train', t.train)] + sorted(t.evals.items())
  assert [n for n, _ in sources(a)] == [n for n, _ in sources(b)]
  for (_, s), (_, r) in zip(sources(a), sources(b)):
    assert type(s) is type(r)
    for f in dataclasses.fields(s):
      x, y = getattr(s, f.name), getattr(r, f.name)
      if isinstance(x, np.ndarray):
        assert (x.dtype, x.shape) == (y.dtype, y.shape), f.name
        assert np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes(), f.name
      else:
        assert x == y, f.name
  for f in dataclasses.fields(a):
    if f.name not in ('vocab', 'train', 'evals'):
      assert getattr(a, f.name) == getattr(b, f.name), f.name
  if config is not None:
    assert program.Program(config, a).cache_key() == program.Program(config, b).cache_key()


def _chat_config(trained: bool):
  from configs import guppylm
  c = lenses_off(guppylm.get_config('smoke'))  # 3,000 conversations
  with c.unlocked():
    if trained:  # a small BPE trained on them, not the published one
      c.task.tokenizer.path = ''
      c.task.tokenizer.vocab_size = 400
      c.model.vocab_size = 400
  return c


@pytest.mark.parametrize('trained', [True, False], ids=['trained_bpe', 'published_bpe'])
def test_a_chat_task_from_the_cache_is_the_fresh_one(cache_dir, tmp_path, monkeypatch, trained):
  c = _chat_config(trained)
  fresh = _fresh(c, monkeypatch)
  first = train.build_task(c)  # built, and kept
  assert len(_entries(cache_dir)) == 1
  with monkeypatch.context() as m:  # read back: no file read, nothing trained or encoded
    m.setattr(chat, 'read_conversations', _refuse)
    m.setattr(tokenizer_lib, 'train', _refuse)
    m.setattr(chat, 'encode_rows', _refuse)
    cached = train.build_task(c)
  assert_same_task(fresh, first, tmp_path / '1')
  assert_same_task(fresh, cached, tmp_path / '2', c)
  assert len(_entries(cache_dir)) == 1


def _corpus_config(name):
  if name == 'char':
    from configs import tiny_llm
    return lenses_off(tiny_llm.get_config('smoke'))  # tiny Shakespeare, 90% / 10%
  from configs import pillmish
  return lenses_off(pillmish.get_config('smoke'))    # a word vocabulary, a validation file


@pytest.mark.parametrize('kind', ['char', 'word'])
def test_a_corpus_task_from_the_cache_is_the_fresh_one(cache_dir, tmp_path, monkeypatch, kind):
  c = _corpus_config(kind)
  fresh = _fresh(c, monkeypatch)
  train.build_task(c)
  with monkeypatch.context() as m:
    m.setattr(corpus, 'read_text', _refuse)
    m.setattr(tokenizer_lib, 'train', _refuse)
    cached = train.build_task(c)
  assert_same_task(fresh, cached, tmp_path, c)
  assert len(_entries(cache_dir)) == 1


def _small_corpus(tmp_path):
  (tmp_path / 'train.txt').write_text('the cat sat on the mat .\n' * 50)
  (tmp_path / 'val.txt').write_text('the dog sat on the log .\n' * 10)
  c = _corpus_config('word')
  with c.unlocked():
    c.task.update(path=str(tmp_path / 'train.txt'), sha256='',
                  val_path=str(tmp_path / 'val.txt'), val_sha256='', block_size=8)
  return c


def test_a_changed_file_tokenizer_setting_or_code_is_a_miss(cache_dir, tmp_path, monkeypatch):
  c = _small_corpus(tmp_path)
  train.build_task(c)
  assert len(_entries(cache_dir)) == 1
  # Fields the cached part does not read: the same entry.
  with c.unlocked():
    c.task.block_size = 4
    c.task.prompts = ('the cat',)
  train.build_task(c)
  assert len(_entries(cache_dir)) == 1
  # The validation file edited in place (same path, same size): a miss, and
  # the task is the fresh one.
  (tmp_path / 'val.txt').write_text('the cat sat on the log .\n' * 10)
  task = train.build_task(c)
  assert len(_entries(cache_dir)) == 2
  assert task.vocab.decode(task.evals['val'].tokens_N[:7]) == 'the cat sat on the [UNK] .'
  assert_same_task(_fresh(c, monkeypatch), task, tmp_path / 'a')
  # A tokenizer setting.
  with c.unlocked():
    c.task.tokenizer.lowercase = False
  train.build_task(c)
  assert len(_entries(cache_dir)) == 3
  # A resumed run's saved tokenizer: its file is part of the key.
  saved = tmp_path / 'w' / 'tokenizer.json'
  os.makedirs(saved.parent)
  task.vocab.save(str(saved))
  train.build_task(c, str(tmp_path / 'w'))
  assert len(_entries(cache_dir)) == 4
  (saved.parent / tokenizer_lib.META).write_text('{"kind": "word", "eos": "."}')
  resumed = train.build_task(c, str(tmp_path / 'w'))
  assert len(_entries(cache_dir)) == 5 and resumed.vocab.eos == '.'
  # tinyjax/tasks' source: another digest.
  code = tmp_path / 'code'
  os.makedirs(code)
  for name in ('corpus.py', 'tokenizer.py'):
    (code / name).write_bytes(open(os.path.join(task_cache._HERE, name), 'rb').read())
  monkeypatch.setattr(task_cache, '_HERE', str(code))
  before = task_cache.code_digest()
  with open(code / 'corpus.py', 'a') as f:
    f.write('# edited\n')
  assert task_cache.code_digest() != before


def test_an_unreadable_entry_is_built_again(cache_dir, tmp_path, monkeypatch):
  c = _small_corpus(tmp_path)
  fresh = _fresh(c, monkeypatch)
  train.build_task(c)
  (name,) = _entries(cache_dir)
  path = cache_dir / name
  good = path.read_bytes()
  for bad in (b'', b'not an npz', good[:len(good) // 2]):
    path.write_bytes(bad)
    assert_same_task(fresh, train.build_task(c), tmp_path / str(len(bad)))
    assert path.read_bytes() == good  # written again
  assert _entries(cache_dir) == [name]


def test_the_least_recently_used_entries_are_deleted_beyond_the_cap(cache_dir, tmp_path,
                                                                    monkeypatch):
  monkeypatch.setattr(task_cache, 'MAX_ENTRIES', 2)
  c = _small_corpus(tmp_path)
  t0 = time.time() - 100
  new = []
  for i in range(4):
    with c.unlocked():
      c.task.tokenizer.min_frequency = i  # another key each time
    before = set(_entries(cache_dir))
    train.build_task(c)
    (name,) = set(_entries(cache_dir)) - before
    os.utime(cache_dir / name, (t0 + i, t0 + i))  # written in this order
    new.append(name)
    if i == 2:  # the second entry read back: used more recently than the third
      with c.unlocked():
        c.task.tokenizer.min_frequency = 1
      train.build_task(c)
      assert set(_entries(cache_dir)) == {new[1], new[2]}
  assert set(_entries(cache_dir)) == {new[1], new[3]}


def test_nothing_is_cached_when_the_compilation_cache_is_off(tmp_path, monkeypatch):
  c = _small_corpus(tmp_path)
  # TINYJAX_COMPILATION_CACHE=off: no folder at all.
  monkeypatch.setattr(compile_cache, '_FOLDER', [])
  monkeypatch.setenv('TINYJAX_COMPILATION_CACHE', 'off')
  assert compile_cache.enable() is None and task_cache.folder() is None
  train.build_task(c)
  # JAX's cache switched off after enable() (tinyjax.bench's cold timings):
  # the folder exists but nothing is read or written there.
  monkeypatch.setattr(compile_cache, '_FOLDER', [str(tmp_path / 'cache')])
  was = jax.config.jax_enable_compilation_cache
  jax.config.update('jax_enable_compilation_cache', False)
  try:
    assert task_cache.folder() is None
    train.build_task(c)
    train.build_task(c)
  finally:
    jax.config.update('jax_enable_compilation_cache', was)
  assert not os.path.exists(tmp_path / 'cache')


def test_arrays_are_stored_narrow_only_where_they_come_back_bit_for_bit():
  cases = [(np.array([0.0, 1.0, 1.0], np.float32), np.bool_),
           (np.array([-0.0, 1.0], np.float32), np.float32),  # -0.0 == 0 but not its bits
           (np.array([0.5, 1.0], np.float32), np.float32),
           (np.array([np.nan, 1.0], np.float32), np.float32),
           (np.array([-1, 5], np.int32), np.int8),
           (np.array([0, 300], np.int32), np.uint16),
           (np.array([-1, 4095], np.int32), np.int16),
           (np.array([0, 70000], np.int32), np.int32)]
  for x, stored in cases:
    small = task_cache._narrow(x)
    assert small.dtype == stored, (x, small.dtype)
    assert small.astype(x.dtype).tobytes() == x.tobytes()
