"""Bare mode (output.minimal): the loss, checkpoints and resume; nothing else."""

import os
import shutil

import numpy as np

from configs import timmy as timmy_config
from tinyjax import loop
from tinyjax import results
from tinyjax import train


def _cfg(minimal: bool):
  cfg = timmy_config.get_config()  # the default config: every lens on in full mode
  with cfg.unlocked():
    cfg.sweep.seeds = 2
    cfg.train.steps = 120
    cfg.train.chunk_steps = 40
    cfg.checkpoint.every = 40
    cfg.checkpoint.log_spaced = False
    cfg.output.minimal = minimal
  return cfg


def test_bare_mode_keeps_the_loss_checkpoints_and_resume(tmp_path):
  full = train.train_and_evaluate(_cfg(False), str(tmp_path / 'full'), progress=False)
  bare = train.train_and_evaluate(_cfg(True), str(tmp_path / 'bare'), progress=False)
  df_full, _ = results.load(str(tmp_path / 'full'))
  df_bare, _ = results.load(str(tmp_path / 'bare'))
  # The bare rows: the loss (and what the divergence check and milestones
  # read), at the same steps as the full mode's rows, with the same values.
  assert {'loss', 'grad_norm', 'loss/content'} <= set(df_bare.columns)
  assert not any(c.startswith(('attn', 'probe', 'heldout', 'generation', 'param_norm'))
                 for c in df_bare.columns), sorted(df_bare.columns)
  assert len(df_full.columns) > 3 * len(df_bare.columns)
  key = ['run', 'step']
  a = df_full.sort_values(key)[['loss', 'loss/content']].to_numpy()
  b = df_bare.sort_values(key)[['loss', 'loss/content']].to_numpy()
  assert a.shape == b.shape == (2 * 13, 2)  # steps 0, 10, ..., 110 and the final 120
  np.testing.assert_allclose(b, a, rtol=1e-6, atol=0)
  for rf, rb in zip(full['runs'], bare['runs']):
    assert rb['final']['loss'] == rf['final']['loss']
    assert rb['generations'] == {} and rf['generations']
  # Nothing but the columnar rows, the checkpoints and the summary.
  assert sorted(os.listdir(tmp_path / 'bare')) == ['checkpoints', 'config.json', 'metrics',
                                                   'summary.json']
  assert sorted(int(d) for d in os.listdir(tmp_path / 'bare' / 'checkpoints')) == [40, 80, 120]
  # Resume: the step-40 checkpoint, as after a crash, gives the same run.
  b = tmp_path / 'bare'
  for d in os.listdir(b / 'checkpoints'):
    if int(d) > 40:
      shutil.rmtree(b / 'checkpoints' / d)
  os.remove(b / 'summary.json')
  resumed = train.train_and_evaluate(_cfg(True), str(b), progress=False)
  assert resumed == bare
  df_resumed, _ = results.load(str(b))
  np.testing.assert_array_equal(df_resumed.sort_values(key)['loss'].to_numpy(),
                                df_bare.sort_values(key)['loss'].to_numpy())


def test_a_cost_table_override_switches_one_item_off():
  from tinyjax import cost
  cfg = timmy_config.get_config()
  off = cost.with_overrides(cfg, cost.ITEMS['checkpoints'][1])
  assert (off.checkpoint.every, off.checkpoint.log_spaced) == (0, False)
  assert (cfg.checkpoint.every, cfg.checkpoint.log_spaced) == (1000, True)  # a copy
  assert loop.checkpoint_steps(off) == {cfg.train.steps}
  bare = cost.with_overrides(cfg, cost.BARE)
  assert bare.output.minimal and not cfg.output.get('minimal', False)


def test_a_cost_table_records_each_jobs_load_and_marks_it_under_load(monkeypatch):
  """Each job of the table records what other processes used meanwhile (as
  tinyjax.bench does); one job during which another process kept a core busy
  marks the whole table under load. The jobs are stand-ins: the table's
  bookkeeping, not training."""
  import subprocess
  import sys
  from tinyjax import cost
  busy = [sys.executable, '-c', 'import time\nt = time.time()\nwhile time.time() - t < 1.0: pass']
  stand_in = {'seconds': 1.0, 'cpu_seconds': 1.0, 'compile': {}, 'profiled': {}}

  def job(cfg, workdir, log_compiles=False):
    if cfg.output.get('minimal', False):  # bare mode's job: another process busy meanwhile
      subprocess.run(busy, check=True)
    return dict(stand_in)
  monkeypatch.setattr(cost, 'job', job)
  monkeypatch.setattr(cost, 'plain_job', lambda cfg, plain_loop: dict(stand_in))
  t = cost.table(timmy_config.get_config(), '/nonexistent', plain_loop=None, repeats=2, items={})
  for name in ('full', 'bare mode (output.minimal)', 'plain JAX loop, sharded'):
    loads = t['jobs'][name]['load']
    assert len(loads) == 2 and all(len(l['loadavg_before']) == 3 for l in loads), loads
  bare = t['jobs']['bare mode (output.minimal)']['load']
  assert min(l['other_cores'] for l in bare) >= 0.5, bare  # the child kept ~1 core busy
  assert t['under_load'] and 'UNDER LOAD' in cost.describe(t)
  # (whether a table without the child is under load depends on the machine:
  # the suite's other workers count too; the rule is the bench's, tested there)


def test_a_cost_tables_repetitions_alternate_the_order_of_its_jobs(monkeypatch):
  """full, bare, plain; then plain, bare, full; ...: a host that slows down over
  the minutes then favours no job (stand-in jobs: the table's bookkeeping)."""
  from tinyjax import cost
  order = []
  stand_in = {'seconds': 1.0, 'cpu_seconds': 1.0, 'compile': {}, 'profiled': {}}

  def job(cfg, workdir, log_compiles=False):
    order.append('bare' if cfg.output.get('minimal', False) else 'full')
    return dict(stand_in)

  def plain_job(cfg, plain_loop):
    order.append('plain')
    return dict(stand_in)
  monkeypatch.setattr(cost, 'job', job)
  monkeypatch.setattr(cost, 'plain_job', plain_job)
  cost.table(timmy_config.get_config(), '/nonexistent', plain_loop=None, repeats=3, items={})
  assert order == ['full', 'bare', 'plain', 'plain', 'bare', 'full', 'full', 'bare', 'plain']


def test_checkpoints_are_saved_off_the_training_thread_after_their_rows(tmp_path, monkeypatch):
  """The chunk loop never waits for the writer: each save is queued on the
  writer thread, behind the metric rows of the steps before it, which are on
  disk (their columnar file and every per-run metrics.jsonl row) when orbax
  is asked to save."""
  import orbax.checkpoint as ocp
  import threading
  from tests.conftest import lenses_off
  from tinyjax import writer
  cfg = lenses_off(_cfg(False))
  seen, real = [], ocp.CheckpointManager.save

  def save(mgr, step, *a, **k):
    rows = writer.read_jsonl(str(tmp_path / 'w' / 'seed=1' / 'metrics.jsonl'))
    cols = sorted(int(f.split('.')[0]) for f in os.listdir(tmp_path / 'w' / 'metrics')) \
        if os.path.isdir(tmp_path / 'w' / 'metrics') else []
    seen.append((step, threading.current_thread().name, rows[-1]['step'] if rows else None,
                 cols[-1] if cols else None))
    return real(mgr, step, *a, **k)
  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  train.train_and_evaluate(cfg, str(tmp_path / 'w'), progress=False)
  # (step, thread, last metrics.jsonl row, last columnar file's first step)
  assert seen == [(40, 'tinyjax-writer', 30, 0), (80, 'tinyjax-writer', 70, 40),
                  (120, 'tinyjax-writer', 110, 80)]
