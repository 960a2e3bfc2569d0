"""tinyjax.compile_cache.Saved: a traced program kept on disk and read back."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from tinyjax import compile_cache


def _fn(traced):
  def f(x, n):
    traced.append(1)  # runs once per trace
    return {'y': x * 2.0 + n, 'z': (x.sum(), jnp.int32(n))}
  return f


def test_saved_program_is_read_back_not_traced(tmp_path):
  traced = []
  folder = str(tmp_path)
  x = jnp.arange(4.0)
  first = compile_cache.Saved('f', _fn(traced), lambda: 'k1', folder)
  out1 = first(x, 3)
  assert len(traced) == 1
  assert [n.split('-')[0] for n in os.listdir(folder)] == ['f']
  # A new Saved on the same folder (as a rerun's process): read, not traced.
  again = compile_cache.Saved('f', _fn(traced), lambda: 'k1', folder)
  out2 = again(x, 3)
  assert len(traced) == 1
  assert jax.tree.structure(out2) == jax.tree.structure(out1)
  for a, b in zip(jax.tree.leaves(out1), jax.tree.leaves(out2)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(out2['y'], [3.0, 5.0, 7.0, 9.0])
  # Another key, or other shapes: traced again, a file of their own.
  compile_cache.Saved('f', _fn(traced), lambda: 'k2', folder)(x, 3)
  assert len(traced) == 2
  again(jnp.arange(5.0), 3)
  assert len(traced) == 3 and len(os.listdir(folder)) == 3
  # The int argument is an array of the program, not a constant of it.
  np.testing.assert_array_equal(again(x, 4)['y'], [4.0, 6.0, 8.0, 10.0])
  assert len(traced) == 3


def test_saved_inside_a_trace_and_without_a_cache(tmp_path):
  traced = []
  s = compile_cache.Saved('f', _fn(traced), lambda: 'k', str(tmp_path))
  shapes = jax.eval_shape(s, jnp.arange(4.0), 3)  # traced inline: nothing saved
  assert shapes['y'].shape == (4,) and os.listdir(tmp_path) == []
  # A broken file is traced again and replaced.
  s(jnp.arange(4.0), 3)
  (path,) = [os.path.join(tmp_path, n) for n in os.listdir(tmp_path)]
  with open(path, 'wb') as f:
    f.write(b'not a program')
  n = len(traced)
  out = compile_cache.Saved('f', _fn(traced), lambda: 'k', str(tmp_path))(jnp.arange(4.0), 3)
  assert len(traced) == n + 1 and float(out['z'][0]) == 6.0
  assert os.path.getsize(path) > 100


def test_checks_recalled_on_a_rerun(tmp_path, monkeypatch):
  """The contracts' pass and the per-run bytes (functions of the shapes) are
  traced once per program, code and data, then read back."""
  from configs import tiny_llm
  from tinyjax import extend
  from tinyjax import memory
  from tinyjax import program as program_lib
  from tinyjax import sweep as sweep_lib
  from tinyjax import train
  monkeypatch.setattr(compile_cache, '_FOLDER', [str(tmp_path)])
  calls = []
  for module, name in ((extend, 'check'), (memory, 'per_run_bytes')):
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, real=real, name=name, **k: (
        calls.append(name), real(*a, **k))[1])
  group = sweep_lib.expand(tiny_llm.get_config('smoke'))[0]
  prog = program_lib.Program(group.config, train.build_task(group.config))
  train.check_group(group, prog)
  assert calls == ['check', 'per_run_bytes']
  train.check_group(group, prog)
  assert calls == ['check', 'per_run_bytes']
  monkeypatch.setattr(compile_cache, '_FOLDER', [str(tmp_path / 'other')])  # nothing stored
  train.check_group(group, prog)
  assert calls == ['check', 'per_run_bytes'] * 2


def test_code_digest_follows_the_users_code(tmp_path, monkeypatch):
  """A program is keyed by the source of the user's modules too: an edited
  file gives another key; a spec module without a source file, no saving."""
  import importlib
  import sys
  import types
  mod = tmp_path / 'my_model_s4.py'
  mod.write_text('SCALE = 1\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  importlib.import_module('my_model_s4')
  before = compile_cache.code_digest()
  assert compile_cache.code_digest(('my_model_s4',)) == before
  mod.write_text('SCALE = 2  # edited\n')
  assert compile_cache.code_digest() != before
  del sys.modules['my_model_s4']
  monkeypatch.setitem(sys.modules, 'nofile_s4', types.ModuleType('nofile_s4'))  # as a notebook's
  assert compile_cache.code_digest(('nofile_s4',)) is None
  traced = []
  s = compile_cache.Saved('f', _fn(traced), lambda: 'k', str(tmp_path / 'p'), ('nofile_s4',))
  s(jnp.arange(2.0), 1)
  s(jnp.arange(2.0), 1)
  assert len(traced) == 1 and not os.path.exists(tmp_path / 'p')  # the plain jit


def test_no_saving_when_jax_cache_is_switched_off(tmp_path, monkeypatch):
  """tinyjax.bench times cold starts with JAX's cache switched off: then no
  traced program is read or written either."""
  monkeypatch.setattr(compile_cache, '_FOLDER', [str(tmp_path)])
  assert compile_cache.programs_dir() == str(tmp_path / compile_cache.PROGRAMS_DIR)
  assert isinstance(compile_cache.saved('f', _fn([]), lambda: 'k'), compile_cache.Saved)
  was = jax.config.jax_enable_compilation_cache
  jax.config.update('jax_enable_compilation_cache', False)
  try:
    assert compile_cache.programs_dir() is None
    assert not isinstance(compile_cache.saved('f', _fn([]), lambda: 'k'), compile_cache.Saved)
  finally:
    jax.config.update('jax_enable_compilation_cache', was)
