"""Training end to end: outputs, plateau, resume, CLI."""

import glob
import json
import operator
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from tests.conftest import LENSES_OFF_FLAGS, run_cli
from tinyjax import train
from tinyjax import writer


def _short(cfg, steps=100):
  # Chunks of 50 steps, one run, the step lenses off: one compiled program for
  # every run of this file (and tests/test_reliability.py, test_corpus.py,
  # test_sweep.py), which JAX's persistent cache then compiles once; any
  # multiple of 50 steps runs it (the step count is not in the program).
  with cfg.unlocked():
    cfg.train.steps = steps
    cfg.train.chunk_steps = 50
    cfg.checkpoint.every = 50
  return cfg


def test_short_run_writes_every_output_and_reaches_the_plateau(timmy, tmp_path):
  cfg = _short(timmy, steps=200)
  summary = train.train_and_evaluate(cfg, str(tmp_path), progress=False)
  (run,) = summary['runs']
  assert run['name'] == run['dir'] == 'seed=0'
  for key in ('name', 'dir', 'hparams', 'final', 'breakthrough_step', 'diverged',
              'generations'):
    assert key in run
  assert set(run['generations']) == set(cfg.eval.prompts)
  assert run['diverged'] is False and run['num_params'] == 6560
  on_disk = json.load(open(tmp_path / 'summary.json'))
  assert on_disk['runs'][0]['final'] == run['final']
  assert json.load(open(tmp_path / 'config.json'))['optimizer']['lr'] == 0.1

  rows = writer.read_jsonl(str(tmp_path / 'seed=0' / 'metrics.jsonl'))
  assert [r['step'] for r in rows] == list(range(0, 201, 10))
  keys = set(rows[0])
  for k in ('loss', 'loss/content', 'loss/space', 'loss/eos', 'accuracy/content',
            'attention_entropy/layer1/head1', 'grad_norm', 'param_norm'):
    assert k in keys
  # classes partition the 45 targets: 20 content, 20 space, 5 eos.
  for r in rows:
    mix = (20 * r['loss/content'] + 20 * r['loss/space'] + 5 * r['loss/eos']) / 45
    assert abs(mix - r['loss']) < 1e-5
  # Plain GD lr 0.1 from N(0, 0.02): the plateau at (20 ln 5) / 45 = 0.715.
  assert 0.70 < rows[-1]['loss'] < 0.75
  assert abs(rows[-1]['loss/content'] - np.log(5)) < 0.03
  assert rows[-1]['step'] == 200 and run['final']['loss'] == rows[-1]['loss']
  assert glob.glob(str(tmp_path / 'seed=0' / 'events.out.tfevents.*'))
  assert sorted(int(d) for d in os.listdir(tmp_path / 'checkpoints')) == [
      0, 10, 20, 40, 50, 80, 100, 150, 160, 200]


# param_norm is not among the metrics an unlogged step computes unless a
# milestone watches it. Both cases train the same config (both milestones): one
# compiled program.
MILESTONES = {'loss': ('loss', '<', 1.5), 'param_norm': ('param_norm', '>', 2.2)}


@pytest.mark.parametrize('metric,op,threshold', list(MILESTONES.values()))
def test_breakthrough_step_is_exact_to_the_step(timmy, tmp_path, metric, op, threshold):
  """The milestone is checked every step, not only on logged ones."""
  cfg = _short(timmy, steps=100)
  with cfg.unlocked():
    cfg.milestones = {f'cross_{k}': v for k, v in MILESTONES.items()}
  summary = train.train_and_evaluate(cfg, str(tmp_path), progress=False)
  step = summary['runs'][0][f'cross_{metric}']
  assert step is not None and step % 10 != 0  # between two logged rows
  # The same run logged at every step (param_norm is logged; no milestone: the
  # dense run of both cases is one compiled program).
  with cfg.unlocked():
    cfg.train.steps, cfg.train.log_every, cfg.checkpoint.every = 100, 1, 0
    cfg.train.chunk_steps, cfg.eval.every = 100, 0
    cfg.checkpoint.log_spaced = False
    cfg.milestones = {}
  train.train_and_evaluate(cfg, str(tmp_path / 'dense'), progress=False)
  rows = writer.read_jsonl(str(tmp_path / 'dense' / 'seed=0' / 'metrics.jsonl'))
  first = next(r['step'] for r in rows if {'<': operator.lt, '>': operator.gt}[op](r[metric], threshold))
  assert first == step


def test_resume_equals_uninterrupted(timmy, tmp_path):
  cfg = _short(timmy, steps=150)
  with cfg.unlocked():
    cfg.lenses.geometry = True  # w0 is rebuilt from the seeds on resume
  full = train.train_and_evaluate(cfg, str(tmp_path / 'a'), progress=False)
  b = tmp_path / 'b'
  shutil.copytree(tmp_path / 'a', b)  # the same run (deterministic: test_reliability.py)
  # Crash after the step-50 checkpoint: later checkpoints, the summary and the
  # final rows never happened; a torn line was being written.
  for d in os.listdir(b / 'checkpoints'):
    if int(d) > 50:
      shutil.rmtree(b / 'checkpoints' / d)
  os.remove(b / 'summary.json')
  path = b / 'seed=0' / 'metrics.jsonl'
  lines = open(path).read().splitlines()[:9]
  open(path, 'w').write('\n'.join(lines) + '\n{"step": 90, "lo')
  resumed = train.train_and_evaluate(cfg, str(b), progress=False)
  assert resumed == full
  assert open(path).read() == open(tmp_path / 'a' / 'seed=0' / 'metrics.jsonl').read()
  # The columnar rows after step 50 were written before the crash: the resume
  # replaced them, none twice.
  from tinyjax import results
  pd.testing.assert_frame_equal(results.load(str(b))[0], results.load(str(tmp_path / 'a'))[0])


def test_different_config_in_same_workdir_is_refused(timmy, tmp_path):
  cfg = _short(timmy, steps=100)
  train.train_and_evaluate(cfg, str(tmp_path), progress=False)
  with cfg.unlocked():
    cfg.optimizer.lr = 0.3
  with pytest.raises(train.ConfigError, match='optimizer.lr'):
    train.train_and_evaluate(cfg, str(tmp_path), progress=False)
  s = train.train_and_evaluate(cfg, str(tmp_path), overwrite=True, progress=False)
  assert s['runs'][0]['hparams']['lr'] == pytest.approx(0.3)


def test_overwrite_never_deletes_a_directory_that_is_not_a_workdir(timmy, tmp_path):
  (tmp_path / 'thesis.tex').write_text('precious')
  with pytest.raises(train.ConfigError, match='not a tinyjax workdir'):
    train.train_and_evaluate(_short(timmy, steps=20), str(tmp_path), overwrite=True,
                             progress=False)
  assert (tmp_path / 'thesis.tex').read_text() == 'precious'


def test_a_workdir_that_is_a_file_is_refused(timmy, tmp_path):
  f = tmp_path / 'notes.txt'
  f.write_text('precious')
  with pytest.raises(train.ConfigError, match='is a file, not a directory'):
    train.train_and_evaluate(_short(timmy, steps=20), str(f), progress=False)
  assert f.read_text() == 'precious'


@pytest.mark.slow  # duplicates tests/test_docs.py::test_the_short_commands_run_as_written
def test_cli_trains_and_generates(tmp_path):
  w = str(tmp_path / 'w')
  # The program of _short's runs above: the process reads it from JAX's
  # persistent cache instead of compiling it (the smoke variant as written, with
  # the lenses: tests/test_docs.py runs it).
  r = run_cli('-m', 'tinyjax.run', '--config', 'configs/timmy.py',
              '--config.train.steps=100', '--config.train.chunk_steps=50',
              '--config.checkpoint.every=50', '--workdir', w, '--noprogress',
              *LENSES_OFF_FLAGS)
  assert r.returncode == 0, r.stderr
  assert '6,560 parameters' in r.stdout and "generate 'violet'" in r.stdout
  assert os.path.exists(os.path.join(w, 'seed=0', 'metrics.jsonl'))
  g = run_cli('-m', 'tinyjax.generate', '--workdir', w, '--prompt', 'blue')
  assert g.returncode == 0, g.stderr
  summary = json.load(open(os.path.join(w, 'summary.json')))
  assert g.stdout.rstrip('\n') == summary['runs'][0]['generations']['blue']


@pytest.mark.parametrize('flag,needle', [
    ('--config.optimizer.lr=-1', 'optimizer.lr'),
    ('--config.train.stepz=5', 'stepz'),
    ('--config.model.n_heads=3', 'n_heads'),
    ('--config.train.steps=abc', 'steps'),
    ('--config.output.per_run_files=-1', 'output.per_run_files'),
    ('--cpu_devices=-1', '--cpu_devices'),
    ('stray', 'unexpected arguments: stray'),
    ('--workdir_is_under_a_file', 'cannot be created'),
])
def test_cli_bad_value_is_one_line_exit_2_and_writes_nothing(tmp_path, flag, needle):
  w = tmp_path / 'w'
  if flag == '--workdir_is_under_a_file':
    (tmp_path / 'f').write_text('')
    flag, w = '--progress', tmp_path / 'f' / 'w'
  r = run_cli('-m', 'tinyjax.run', '--config', 'configs/timmy.py', flag, '--workdir',
              str(w), timeout=300)  # 60 s was too short on a loaded machine
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('tinyjax: error:') and needle in lines[0]
  assert not w.exists()


def test_eval_prompts_choose_the_generations(timmy, tmp_path):
  cfg = _short(timmy, steps=100)
  with cfg.unlocked():
    cfg.eval.prompts = ('violet', 'red red')
  (run,) = train.train_and_evaluate(cfg, str(tmp_path), progress=False)['runs']
  assert list(run['generations']) == ['violet', 'red red']
  assert list(run['generation_correct']) == ['violet']  # the task knows this one
  rows = writer.read_jsonl(str(tmp_path / 'seed=0' / 'metrics.jsonl'))
  assert 'generation/violet' in rows[0] and 'generation/red' not in rows[0]


def test_final_evaluation_is_the_logged_row_without_the_update():
  """prog.evaluate is the training chunk run for zero steps: the row of step
  s equals the row the chunk logs at s (bit for bit, lenses included), with
  the evaluation whatever its schedule, and the parameters are not updated."""
  import jax
  from configs import timmy as timmy_cfg
  from tinyjax import program, tasks
  cfg = timmy_cfg.get_config()
  with cfg.unlocked():
    cfg.train.chunk_steps = 20
  prog = program.Program(cfg, tasks.build(cfg.task))
  hp = program.hparam_arrays([{**program.base_hparams(cfg), 'seed': s} for s in (0, 1)])
  hp = prog.with_init(hp, state0 := prog.init(hp))
  state10, _ = prog.chunk(state0, hp, prog.data, 0, 10)
  after, row = prog.evaluate(state10, hp, prog.data, 10)
  _, rows = prog.chunk(state10, hp, prog.data, 10, 10)
  logged = {k: np.asarray(v[0]) for k, v in rows.items()}
  row = {k: np.asarray(v) for k, v in row.items()}
  for a, b in zip(jax.tree.leaves(after['params']) + jax.tree.leaves(after['opt_state']),
                  jax.tree.leaves(state10['params']) + jax.tree.leaves(state10['opt_state'])):
    np.testing.assert_array_equal(a, b)
  assert not any(k.startswith('update_ratio/') for k in row)
  assert any(k.startswith('update_ratio/') for k in logged)  # (the logged row has them)
  evaluated = [k for k in row if np.isnan(logged[k]).all()]
  assert 'heldout/loss' in evaluated and np.isfinite(row['heldout/loss']).all()
  same = [k for k in row if k not in evaluated]
  assert {'loss', 'grad_norm', 'lr', 'param_norm'} <= set(same) and len(same) > 30
  for k in same:
    np.testing.assert_array_equal(row[k], logged[k], err_msg=k)


def test_a_run_compiles_its_chunk_once_and_no_second_program_for_the_final_row(timmy, tmp_path):
  """The chunk compiled ahead (on a side thread, from the state's shapes) is
  the one every call uses, the final evaluation included: a signature
  mismatch there would compile it again, silently."""
  import jax
  with timmy.unlocked():
    timmy.train.steps, timmy.train.chunk_steps, timmy.train.log_every = 40, 20, 4
    timmy.checkpoint.every, timmy.sweep.seeds, timmy.eval.every = 20, 3, 8
  compiled = []
  listen = lambda event, seconds, fun_name='?', **_: (
      compiled.append(fun_name) if event == '/jax/core/compile/backend_compile_duration' else None)
  train._PROGRAMS.clear()
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    summary = train.train_and_evaluate(timmy, str(tmp_path / 'w'), progress=False)
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  assert [f for f in compiled if 'chunk' in f] == ['jit(_chunk)'], compiled
  assert not [f for f in compiled if 'evaluat' in f], compiled
  assert all(r['final']['step'] == 40 and r['final']['heldout/loss'] is not None
             for r in summary['runs'])


def test_the_brief_of_a_diverged_run_says_nan():
  """A diverged run's final row is NaN (summary.json: null); the printed brief
  says so instead of failing on the missing number."""
  from tinyjax import report
  run = {'name': 'seed=0', 'num_params': 1234, 'final': {'step': 20, 'loss': None},
         'diverged': True, 'diverged_step': 10, 'breakthrough_step': None, 'generations': {}}
  assert report.brief({'runs': [run]}).splitlines()[0] == (
      'run seed=0: 1,234 parameters, step 20, loss nan (diverged at step 10)')


def test_sgd_with_momentum_zero_leaves_its_trace_unread_and_keys_the_programs_by_it():
  import jax
  import jax.numpy as jnp
  import optax
  from configs import timmy
  from tinyjax import optimizer as optimizer_lib
  from tinyjax import program as program_lib
  cfg = timmy.get_config()
  assert program_lib.momentum_unread(cfg)
  with_momentum, swept = cfg.copy_and_resolve_references(), cfg.copy_and_resolve_references()
  with_momentum.optimizer.momentum = 0.9
  swept.sweep.grid = {'optimizer': {'momentum': (0.0, 0.9)}}
  keys = {program_lib.program_key(c) for c in (cfg, with_momentum, swept)}
  assert not program_lib.momentum_unread(with_momentum) and not program_lib.momentum_unread(swept)
  assert len(keys) == 2  # momentum 0.9 and a swept momentum compile the trace; 0 does not
  hp = {'lr': jnp.float32(0.1), 'momentum': jnp.float32(0.0), 'weight_decay': jnp.float32(0.0)}
  params = {'w': jnp.asarray([1.0, -2.0, 0.5])}
  full = optimizer_lib.make(cfg.optimizer, hp)
  unread = optimizer_lib.momentum_unread(full)
  s_full, s_unread = full.init(params), unread.init(params)
  assert jax.tree.structure(s_full) == jax.tree.structure(s_unread)  # checkpoints keep their layout
  for g in ([0.3, -1.0, 2.0], [1.5, 0.25, -0.75]):
    g = {'w': jnp.asarray(g)}
    u_full, s_full = full.update(g, s_full, params)
    u_unread, s_unread = unread.update(g, s_unread, params)
    np.testing.assert_array_equal(np.asarray(u_full['w']), np.asarray(u_unread['w']))
  traces = [s for s in jax.tree.leaves(s_unread, is_leaf=lambda s: isinstance(s, optax.TraceState))
            if isinstance(s, optax.TraceState)]
  assert traces and all(not np.asarray(t.trace['w']).any() for t in traces)  # never rewritten


def test_a_job_leaves_older_objects_out_of_full_collections_until_it_ends(monkeypatch):
  """train_and_evaluate freezes the objects that exist when it starts (gc.freeze)
  and unfreezes them at its end, also when it fails; a caller's own freeze stays."""
  import gc
  seen = []

  def job(*_):
    seen.append(gc.get_freeze_count())
    if len(seen) == 2:
      raise RuntimeError('a fault')
    return {}
  monkeypatch.setattr(train, '_train_and_evaluate', job)
  assert gc.get_freeze_count() == 0
  train.train_and_evaluate(None, 'w')
  assert seen[0] > 1000 and gc.get_freeze_count() == 0
  with pytest.raises(RuntimeError, match='a fault'):
    train.train_and_evaluate(None, 'w')
  assert gc.get_freeze_count() == 0
  gc.freeze()
  try:
    # Neither frozen again nor unfrozen by the job (recorded calls: the count
    # itself drops when another thread frees a frozen object meanwhile).
    calls = []
    with monkeypatch.context() as m:
      m.setattr(gc, 'freeze', lambda: calls.append('freeze'))
      m.setattr(gc, 'unfreeze', lambda: calls.append('unfreeze'))
      train.train_and_evaluate(None, 'w')
    assert calls == [] and seen[2] > 1000
  finally:
    gc.unfreeze()


@pytest.mark.parametrize('change', [{'train.log_every': 50},
                                    {'output.minimal': True},
                                    {'lenses.every': 0, 'eval.every': 10}])
def test_the_trajectory_is_the_same_whatever_is_observed(change):
  """What a run logs (its cadence, lenses, evaluation, bare mode) does not move
  its trajectory by one bit: every step is the same compiled step, the row a
  branch beside it. (Until 2026-12-03 the logged step was a second copy of
  the forward and backward pass, fused differently: Timmy's loss at log_every
  50 parted from log_every 10's in the last bits by step 300, by 0.13 at the
  breakthrough.)"""
  import jax
  from configs import timmy as timmy_cfg
  from tinyjax import cost, program, tasks

  def run(overrides):
    cfg = cost.with_overrides(timmy_cfg.get_config(), {'train.steps': 600,
                                                       'train.chunk_steps': 600, **overrides})
    prog = program.Program(cfg, tasks.build(cfg.task))
    hp = program.hparam_arrays([{**program.base_hparams(cfg), 'seed': 0}])
    hp = prog.with_init(hp, state := prog.init(hp))
    state, rows = prog.chunk(state, hp, prog.data, 0, 600)
    every = cfg.train.log_every
    return state, {s: np.asarray(rows['loss'][s // every]) for s in range(0, 600, 50)}

  (state_a, loss_a), (state_b, loss_b) = run({}), run(change)
  for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
    np.testing.assert_array_equal(a, b)
  for s in loss_a:
    np.testing.assert_array_equal(loss_a[s], loss_b[s], err_msg=f'step {s}')


@pytest.mark.parametrize('ints', [True, False])
def test_the_logged_rows_work_is_traced_once(monkeypatch, ints):
  """The chunk traces the logged step's row once: the NaN rows' shapes come
  from the trace the step then reuses (jit's cache; with the runs on their
  mesh as the step sees them), and the step itself is traced once. (Until
  2026-12-03 a second trace of the whole step gave the NaN rows their shapes:
  ~45% of Timmy's chunk trace, on the path before its compile.)"""
  import jax
  from configs import timmy as timmy_cfg
  from tinyjax import cost, loop, program, sweep as sweep_lib, train
  cfg = cost.with_overrides(timmy_cfg.get_config(), {'sweep.seeds': 4, 'train.steps': 20})
  group = sweep_lib.expand(cfg)[0]
  prog = program.Program(group.config, train.build_task(group.config))
  hp_np = program.hparam_arrays([r['hparams'] for r in group.runs])
  mesh = loop.runs_mesh(len(group.runs))
  shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('runs'))
  hp = jax.device_put(hp_np, shard)
  state = jax.device_put(prog.init(hp), shard)
  hp = prog.with_init(hp, state)
  data = jax.device_put(prog.data, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  traced = {'row': 0, 'forward': 0}
  row, forward = program.Program._row, program.Program._forward

  def counted(name, fn):
    def wrapped(*a, **k):
      traced[name] += 1
      return fn(*a, **k)
    return wrapped
  monkeypatch.setattr(program.Program, '_row', counted('row', row))
  monkeypatch.setattr(program.Program, '_forward', counted('forward', forward))
  # Python ints (weak-typed, as tinyjax.loop passes them) or int32 arrays.
  jax.jit(prog._chunk).trace(state, hp, data, *((0, 20) if ints else map(np.int32, (0, 20))))
  assert traced == {'row': 1, 'forward': 1}
