"""Sweeps: expansion, one vmapped program = many single runs, sharding, divergence."""

import json
import math
import os
import textwrap

import numpy as np
import pytest

from tests.conftest import LENSES_OFF_FLAGS, lenses_off, run_cli
from tinyjax import sweep
from tinyjax import train
from tinyjax import writer


def _small(cfg, steps=60, seeds=3, lrs=()):
  # Chunks of 50 (a checkpoint at 30 splits the first): a single run is then the
  # program of tests/test_train.py's, compiled once for the suite.
  with cfg.unlocked():
    cfg.train.steps, cfg.train.chunk_steps, cfg.checkpoint.every = steps, 50, 30
    cfg.checkpoint.log_spaced = False
    cfg.sweep.seeds, cfg.sweep.lrs = seeds, lrs
  return cfg


def test_expand_names_runs_and_splits_shape_changing_axes(timmy):
  with timmy.unlocked():
    timmy.sweep.seeds, timmy.sweep.lrs = 2, (0.03, 0.1)
    timmy.sweep.grid = {'model': {'d_model': (16, 32)}, 'optimizer': {'momentum': (0.0, 0.9)}}
  groups = sweep.expand(timmy)
  assert [g.name for g in groups] == ['d_model=16', 'd_model=32']
  assert [g.config.model.d_model for g in groups] == [16, 32]
  names = [r['name'] for r in groups[1].runs]
  assert len(names) == 8 and names[0] == 'd_model=32/momentum=0/lr=0.03/seed=0'
  assert names[-1] == 'd_model=32/momentum=0.9/lr=0.1/seed=1'
  hp = groups[1].runs[-1]['hparams']
  assert (hp['momentum'], hp['lr'], hp['seed']) == (0.9, 0.1, 1)


def test_sweep_of_unknown_field_is_a_config_error(timmy):
  with timmy.unlocked():
    timmy.sweep.grid = {'model': {'widht': (1, 2)}}
  with pytest.raises(sweep.ConfigError, match='model.widht'):
    sweep.expand(timmy)


def _final(summary):
  return {r['name']: r for r in summary['runs']}


@pytest.fixture(scope='module')
def six_runs(tmp_path_factory):
  """Timmy, 2 learning rates x 3 seeds, 60 steps, in a workdir of more runs
  (6) than output.per_run_files (4): metrics.jsonl for seeds 0 and 1 only.
  Trained once for the two tests below: (config, workdir, summary)."""
  from configs import timmy
  cfg = _small(lenses_off(timmy.get_config()), steps=60, seeds=3, lrs=(0.03, 0.1))
  with cfg.unlocked():
    cfg.output = {'per_run_files': 4, 'sample_seeds': 2, 'across_seeds': True}
  w = tmp_path_factory.mktemp('six') / 'big'
  return cfg, w, train.train_and_evaluate(cfg, str(w), progress=False)


def test_a_run_in_a_sweep_matches_the_same_run_alone(six_runs, tmp_path):
  cfg, s, summary = six_runs
  swept = _final(summary)
  cfg = cfg.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.sweep.seeds, cfg.sweep.lrs, cfg.seed, cfg.optimizer.lr = 0, (), 1, 0.03
  alone = train.train_and_evaluate(cfg, str(tmp_path / 'a'), progress=False)['runs'][0]
  assert alone['name'] == 'seed=1'
  twin = swept['lr=0.03/seed=1']
  rows_s = writer.read_jsonl(str(s / 'lr=0.03' / 'seed=1' / 'metrics.jsonl'))
  rows_a = writer.read_jsonl(str(tmp_path / 'a' / 'seed=1' / 'metrics.jsonl'))
  assert [r['step'] for r in rows_s] == [r['step'] for r in rows_a]
  # Every logged metric (the README's promise), per key: the same keys, the
  # same missing values (None / NaN), numbers within 1e-5 of each other
  # (float32 rounding of a different summation order under vmap).
  assert 'attention_entropy/layer1/head0' in rows_s[0] and len(rows_s[0]) > 20
  worst = {}
  for rs, ra in zip(rows_s, rows_a):
    assert set(rs) == set(ra), (rs['step'], set(rs) ^ set(ra))
    for k in rs:
      a, b = rs[k], ra[k]
      if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        assert a == b, (rs['step'], k, a, b)
      elif math.isnan(a) or math.isnan(b):
        assert math.isnan(a) and math.isnan(b), (rs['step'], k, a, b)
      else:
        worst[k] = max(worst.get(k, 0.0), abs(a - b))
  print('largest |sweep - alone| per metric:', sorted(worst.items(), key=lambda kv: -kv[1])[:5])
  assert max(worst.values()) <= 1e-5, sorted(worst.items(), key=lambda kv: -kv[1])[:5]
  assert twin['generations'] == alone['generations']
  # Another seed is another init; another lr another curve.
  assert swept['lr=0.03/seed=0']['final']['loss'] != twin['final']['loss']
  assert swept['lr=0.1/seed=1']['final']['loss'] < twin['final']['loss']
  assert os.path.exists(s / 'report.md')
  assert os.path.exists(s / 'sweep.png')
  # The whole sweep as one table: run, swept values, step, metrics.
  from tinyjax import results
  df, summary = results.load(str(s))
  assert list(df.columns[:4]) == ['run', 'lr', 'seed', 'step']
  assert len(df) == 6 * len(rows_s) and df['run'].nunique() == 6
  twin_rows = df[(df.lr == 0.03) & (df.seed == 1)]
  assert twin_rows['loss'].tolist() == [r['loss'] for r in rows_s]
  assert summary['runs'][0]['name'] == df['run'].iloc[0]


def test_a_big_sweep_writes_every_run_columnar_a_sample_per_run_and_seed_quantiles(six_runs):
  from tensorboard.backend.event_processing import event_accumulator
  from tinyjax import results
  _, w, summary = six_runs
  # 6 runs > 4: per-run files for seeds 0 and 1 of each learning rate only.
  with_files = {r['name'] for r in summary['runs'] if r['files']}
  assert with_files == {f'lr={lr}/seed={s}' for lr in ('0.03', '0.1') for s in (0, 1)}
  for r in summary['runs']:
    assert (w / r['name'] / 'metrics.jsonl').exists() == (r['name'] in with_files)
  df, _ = results.load(str(w))
  assert df['run'].nunique() == 6 and set(df['step']) == set(range(0, 61, 10))
  rows = writer.read_jsonl(str(w / 'lr=0.1' / 'seed=1' / 'metrics.jsonl'))
  run = df[df.run == 'lr=0.1/seed=1']
  assert run['loss'].tolist() == [r['loss'] for r in rows]
  assert results.run_rows(str(w))['lr=0.1/seed=1'] == rows
  # TensorBoard across seeds: one directory per learning rate, in it one run per
  # statistic of all 3 seeds, each with the plain metric tag (one chart per metric).
  assert sorted(os.listdir(w / 'across_seeds')) == ['lr=0.03', 'lr=0.1']
  assert sorted(os.listdir(w / 'across_seeds' / 'lr=0.1')) == ['mean', 'p10', 'p50', 'p90']
  for stat, fn in (('p50', np.median), ('mean', np.mean), ('p90', lambda x: np.percentile(x, 90)),
                   ('p10', lambda x: np.percentile(x, 10))):
    acc = event_accumulator.EventAccumulator(str(w / 'across_seeds' / 'lr=0.1' / stat)).Reload()
    assert 'loss/content' in acc.Tags()['scalars'] and 'loss/p50' not in acc.Tags()['scalars']
    events = acc.Scalars('loss')
    assert [e.step for e in events] == list(range(0, 61, 10))
    for e in events:
      x = df[(df.lr == 0.1) & (df.step == e.step)]['loss'].to_numpy()
      assert len(x) == 3 and e.value == pytest.approx(fn(x), rel=1e-6)


def test_report_probes_are_each_runs_loss_at_the_configs_steps():
  import ml_collections
  import pandas as pd
  from tinyjax import report
  df = pd.DataFrame({'run': ['a', 'a', 'a', 'b', 'b'], 'step': [0, 10, 20, 10, 20],
                     'loss': [2.0, 1.5, float('nan'), 1.25, 0.5]})
  summary = {'runs': [{'name': 'a'}, {'name': 'b'}, {'name': 'c'}]}
  cfg = ml_collections.ConfigDict({'report': {'loss_at': (10, 20, 99)}})
  report.add_probes(summary, cfg, df)
  assert [r['probe'] for r in summary['runs']] == [{'10': 1.5, '20': None},
                                                   {'10': 1.25, '20': 0.5}, {}]
  assert all(type(v) is float for v in summary['runs'][1]['probe'].values())
  report.add_probes(summary, ml_collections.ConfigDict({}), df)
  assert [r['probe'] for r in summary['runs']] == [{}, {}, {}]


def test_report_log_axes_are_labelled_in_plain_numbers():
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib.figure import Figure
  from tinyjax import report
  ax = Figure().add_subplot()
  ax.plot([1, 5000], [2.2, 0.01])
  ax.set(xscale='log', yscale='log')
  report.plain_log_labels(ax)
  ax.figure.canvas.draw()
  labels = [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text()]
  assert labels and not any('$' in t for t in labels), labels  # no mathtext
  assert {'1', '10', '100', '1000'} <= set(labels), labels


def test_summary_json_is_written_once_after_the_report_and_after_every_group_else(
    six_runs, tmp_path, monkeypatch):
  """A sweep's summary.json is written after the report (one write, with the
  report in it); a job of several groups writes it after every group but the
  last, so that a later group's fault keeps what finished."""
  cfg, _, _ = six_runs
  writes = []
  real = train.write_summary
  monkeypatch.setattr(train, 'write_summary',
                      lambda w, s, merged=False: (writes.append(len(s['runs'])), real(w, s, merged)))
  cfg = cfg.copy_and_resolve_references()
  with cfg.unlocked():
    cfg.train.steps, cfg.sweep.lrs = 20, ()
    cfg.sweep.seeds = 2
  train.train_and_evaluate(cfg, str(tmp_path / 'one'), progress=False)
  assert writes == [2]
  assert 'report' in json.load(open(tmp_path / 'one' / 'summary.json'))
  writes.clear()
  with cfg.unlocked():
    cfg.sweep.grid = {'model': {'n_heads': (1, 2)}}  # two groups (a static axis)
  train.train_and_evaluate(cfg, str(tmp_path / 'two'), progress=False)
  assert writes == [2, 4]


def test_seed_stats_are_numpys_nan_aware_statistics():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 5, 17))
  x[0, 0] = np.nan                     # an all-NaN row: no value
  x[1, 2, :7] = np.nan                 # diverged runs are left out
  x[2, 3, 3] = np.inf
  s = writer.seed_stats(x)
  ref = np.where(np.isfinite(x), x, np.nan)
  with np.errstate(all='ignore'), pytest.warns(RuntimeWarning):
    np.testing.assert_allclose(s['mean'], np.nanmean(ref, -1), rtol=1e-12)
    for q in writer.QUANTILES:
      np.testing.assert_allclose(s[f'p{q}'], np.nanpercentile(ref, q, -1), rtol=1e-12)
  assert np.isnan(s['p50'][0, 0]) and np.isfinite(s['p50'][1, 2])


SHARD_CHECK = textwrap.dedent('''
  import jax, sys
  from jax.sharding import PartitionSpec as P
  from configs import timmy
  from tinyjax import loop, program, sweep, tasks
  assert jax.device_count() == 4, jax.devices()
  cfg = timmy.get_config()
  with cfg.unlocked():
    cfg.sweep.seeds = 6
  (g,) = sweep.expand(cfg)
  prog = program.Program(g.config, tasks.build(g.config.task))
  hp = program.hparam_arrays([r['hparams'] for r in g.runs])
  hp = jax.device_put(loop._pad(hp, 2), jax.sharding.NamedSharding(loop.runs_mesh(), P('runs')))
  state0 = prog.init(hp)
  state, rows = prog.chunk(state0, hp, prog.data, 0, 10)
  for leaf in jax.tree.leaves(state) + jax.tree.leaves(rows):
    assert len(leaf.sharding.device_set) == 4, leaf.sharding
  # Runs are independent: the training chunk moves no data between devices.
  # Its one collective is the sampler loop's exit test (a pred[] all-reduce:
  # every row of every run done). A gathered op (LAPACK's eig, once) is caught.
  hlo = prog.chunk.lower(state0, hp, prog.data, 0, 10).compile().as_text()
  moved = [l.strip()[:120] for l in hlo.splitlines()
           if any(f' {c}(' in l for c in ('all-gather', 'all-reduce', 'all-to-all',
                                          'collective-permute', 'reduce-scatter'))
           and '= pred[] all-reduce(' not in l]
  assert not moved, moved
  # A group of fewer runs than devices uses one device per run (no padding).
  assert [loop.runs_mesh(n).devices.size for n in (1, 3, 6)] == [1, 3, 4]
  print('sharded over', jax.device_count())
''')


@pytest.mark.slow  # too long for the CI suite's 10 minutes: python -m pytest -m slow
def test_four_devices_give_the_same_metrics_as_one(timmy, tmp_path):
  """6 runs on 4 CPU devices (padded to 8; XLA_FLAGS, then the CLI's
  --cpu_devices) == the same 6 runs on 1."""
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}
  r = run_cli('-c', SHARD_CHECK, env=env)
  assert r.returncode == 0 and 'sharded over 4' in r.stdout, r.stderr[-2000:]
  w4 = str(tmp_path / 'four')
  r = run_cli('-m', 'tinyjax.run', '--config', 'configs/timmy.py', '--config.sweep.seeds=6',
              '--config.train.steps=60', '--config.train.chunk_steps=50',
              '--config.checkpoint.every=30', '--config.checkpoint.log_spaced=false',
              '--workdir', w4, '--noprogress', '--cpu_devices=4', *LENSES_OFF_FLAGS)
  assert r.returncode == 0, r.stderr[-2000:]
  one = train.train_and_evaluate(_small(timmy, seeds=6), str(tmp_path / 'one'), progress=False)
  assert len(one['devices']) == 1
  one = _final(one)
  four = json.load(open(os.path.join(w4, 'summary.json')))
  assert four['devices'] == [f'cpu:{i}' for i in range(4)]
  four = _final(four)
  assert list(one) == list(four) == [f'seed={i}' for i in range(6)]
  for name in one:
    for k, v in one[name]['final'].items():
      assert v == pytest.approx(four[name]['final'][k], abs=1e-5), (name, k)
    assert one[name]['generations'] == four[name]['generations']


def test_diverging_run_is_frozen_marked_and_isolated(timmy, tmp_path):
  cfg = _small(timmy, seeds=2, lrs=(0.1, 100.0))
  with cfg.unlocked():
    cfg.model.norm = 'none'  # without the norms, lr 100 blows up in a few steps
  both = _final(train.train_and_evaluate(cfg, str(tmp_path / 'both'), progress=False))
  # The same runs in a sweep without a diverging one: lr 0.3 in lr 100's place
  # (the same 4 runs, so the same compiled program; the lr is traced).
  with cfg.unlocked():
    cfg.sweep.lrs = (0.1, 0.3)
  calm = _final(train.train_and_evaluate(cfg, str(tmp_path / 'calm'), progress=False))
  assert not any(r['diverged'] for r in calm.values())
  for seed in (0, 1):
    bad = both[f'lr=100/seed={seed}']
    assert bad['diverged'] and bad['diverged_step'] is not None and bad['diverged_step'] < 10
    good = both[f'lr=0.1/seed={seed}']
    assert not good['diverged']
    for k, v in good['final'].items():
      assert v == pytest.approx(calm[f'lr=0.1/seed={seed}']['final'][k], abs=1e-6)
  rows = writer.read_jsonl(str(tmp_path / 'both' / 'lr=100' / 'seed=0' / 'metrics.jsonl'))
  assert rows[-1]['step'] == 60  # the run stays in the table, frozen
  report = open(tmp_path / 'both' / 'report.md').read()
  assert '| lr=100 | 2 | 2 |' in report and '| lr=0.1 | 2 | 0 |' in report


CPU_DEVICES = textwrap.dedent('''
  import os, sys
  from tinyjax import cli
  cli.set_cpu_devices(int(sys.argv[1]))
  import jax
  print(jax.device_count(), len(os.sched_getaffinity(0)))
''')


@pytest.mark.parametrize('flag,xla_flags,expect', [
    ('3', '', '3'), ('0', '', 'cores'),
    ('3', '--xla_force_host_platform_device_count=4', '4')])  # XLA_FLAGS wins
def test_cpu_devices(flag, xla_flags, expect):
  r = run_cli('-c', CPU_DEVICES, flag, env={'XLA_FLAGS': xla_flags})
  assert r.returncode == 0, r.stderr[-2000:]
  devices, cores = r.stdout.split()
  assert devices == (cores if expect == 'cores' else expect)
