"""Faults the host cannot fix (docs/faults.md): each ends the run with one line
naming it, the last intact checkpoint and how to go on, exit status 2; no
fault leaves the process waiting; a rerun after the fault is cleared gives the
uninterrupted run's numbers exactly.

Faults are injected: a wrapped call raises the OSError a full disk or a
read-only workdir raises (or XLA's RESOURCE_EXHAUSTED). These tests run as
root, whom chmod does not stop, so a read-only checkpoint directory is the
error its writes would raise, not a chmod.
"""

import errno
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.path import async_path
import pytest
import tensorboardX.record_writer

from tests.conftest import LENSES_OFF_FLAGS
from tests.conftest import ROOT
from tests.conftest import lenses_off
from tinyjax import faults
from tinyjax import memory
from tinyjax import program as program_lib
from tinyjax import report
from tinyjax import results
from tinyjax import sweep
from tinyjax import train
from tinyjax import writer
from tinyjax.tasks import ConfigError

STEPS = 200


def _cfg(seeds=2):
  """Timmy, 200 steps in chunks of 50, a checkpoint every 50, two seeds (so
  the across-seeds files and the sweep report are written too)."""
  from configs import timmy
  c = lenses_off(timmy.get_config())
  with c.unlocked():
    c.train.steps, c.train.chunk_steps = STEPS, 50
    c.checkpoint.every, c.checkpoint.log_spaced = 50, False
    c.sweep.seeds = seeds
  return c


def _rows(w):
  """Every run's metric rows (columnar files) and its metrics.jsonl text."""
  return results.run_rows(str(w)), {
      p: open(os.path.join(w, p, 'metrics.jsonl')).read() for p in ('seed=0', 'seed=1')}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  w = tmp_path_factory.mktemp('ref') / 'w'
  summary = train.train_and_evaluate(_cfg(), str(w), progress=False)
  rows, jsonl = _rows(w)
  for name, r in rows.items():  # none missing, none twice
    assert [x['step'] for x in r] == list(range(0, STEPS + 1, 10)), name
  return summary, rows, jsonl, w


def _ckpts(w):
  d = os.path.join(w, 'checkpoints')
  return sorted(int(x) for x in os.listdir(d) if x.isdigit()) if os.path.isdir(d) else []


def _fail_at(monkeypatch, owner, attr, n, exc):
  """owner.attr's n-th call (on any thread) raises exc."""
  real, calls, lock = getattr(owner, attr), [0], threading.Lock()

  def wrapper(*args, **kwargs):
    with lock:
      calls[0] += 1
      hit = calls[0] == n
    if hit:
      raise exc
    return real(*args, **kwargs)
  monkeypatch.setattr(owner, attr, wrapper)


def _oom():
  return jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to '
                                    'allocate 1048576 bytes.')


FULL = 'no space left on device', 'free some space'
DENIED = 'permission denied', 'make the workdir writable again'
READ_ONLY = 'read-only file system', 'make the workdir writable again'

# (where, owner, attribute, which call fails, error, (what, todo), file named)
CASES = [
    ('writer thread: columnar rows', writer.Columns, 'write', 3,
     OSError(errno.ENOSPC, 'No space left on device', 'metrics/000000100.p0.npz'), FULL),
    ('writer thread: metrics.jsonl', writer.RunWriter, 'write', 21,
     OSError(errno.EACCES, 'Permission denied', 'seed=1/metrics.jsonl'), DENIED),
    ('writer thread: event file', tensorboardX.record_writer.RecordWriter, 'write', 40,
     OSError(errno.ENOSPC, 'No space left on device', 'events.out.tfevents'), FULL),
    ("orbax's commit thread", async_path, 'write_text', 8,
     OSError(errno.EROFS, 'Read-only file system', 'commit_success.txt'), READ_ONLY),
    ('checkpoint save', ocp.CheckpointManager, 'save', 3,
     OSError(errno.ENOSPC, 'No space left on device', 'checkpoints'), FULL),
    ('summary.json', train, 'write_summary', 1,
     OSError(errno.ENOSPC, 'No space left on device', 'summary.json'), FULL),
    ('sweep report', report, 'write', 1,
     OSError(errno.EACCES, 'Permission denied', 'report.md'), DENIED),
]


@pytest.mark.parametrize('where,owner,attr,n,exc,kind', CASES, ids=[c[0] for c in CASES])
def test_a_write_fault_is_one_message_and_a_rerun_resumes_exactly(
    reference, tmp_path, monkeypatch, where, owner, attr, n, exc, kind):
  ref_summary, ref_rows, ref_jsonl, ref_w = reference
  w = tmp_path / 'w'
  before = set(threading.enumerate())
  _fail_at(monkeypatch, owner, attr, n, exc)
  with pytest.raises(faults.WriteError) as e:
    train.train_and_evaluate(_cfg(), str(w), progress=False)
  kept = _ckpts(w)
  what, todo = kind
  step = f'last intact checkpoint: step {kept[-1]}' if kept else (
      'no checkpoint yet, a rerun starts over')
  assert str(e.value) == (f'{what} writing {exc.filename}; {step}; {todo}, then rerun the '
                          'same command to resume')
  assert e.value.status == 2
  # The writer's and orbax's threads end (within 5 s: an asyncio executor thread
  # of orbax's may still be returning when the error reaches us; a hung one fails).
  deadline = time.monotonic() + 5
  for t in set(threading.enumerate()) - before:
    t.join(timeout=max(0.0, deadline - time.monotonic()))
  assert [t.name for t in set(threading.enumerate()) - before if t.is_alive()] == []
  half_written = glob.glob(str(w / 'checkpoints' / '*.orbax-checkpoint-tmp*'))
  if owner is async_path:  # the commit failed: its folder is left half-written
    assert half_written
  monkeypatch.undo()
  again = train.train_and_evaluate(_cfg(), str(w), progress=False)
  assert again['runs'] == ref_summary['runs']
  assert _rows(w) == (ref_rows, ref_jsonl)
  assert not glob.glob(str(w / 'checkpoints' / '*.orbax-checkpoint-tmp*'))  # cleared


def test_the_device_out_of_memory_is_one_message_and_a_rerun_resumes_exactly(
    reference, tmp_path, monkeypatch):
  ref_summary, ref_rows, ref_jsonl, ref_w = reference
  w = tmp_path / 'w'
  real = train.program_for

  class OutOfMemoryAtChunk3:
    """The program, whose third chunk fails as XLA fails one too big for the device."""
    def __init__(self, prog):
      self.prog, self.calls = prog, 0

    def __getattr__(self, name):
      return getattr(self.prog, name)

    def chunk(self, *args):
      self.calls += 1
      if self.calls == 3:
        raise _oom()
      return self.prog.chunk(*args)

  monkeypatch.setattr(train, 'program_for', lambda c, t: OutOfMemoryAtChunk3(real(c, t)))
  with pytest.raises(faults.DeviceMemoryError) as e:
    train.train_and_evaluate(_cfg(), str(w), progress=False)
  # Chunk 3 is dispatched before chunk 2's rows are fetched and its checkpoint saved.
  assert _ckpts(w) == [50]
  n = 2 // min(2, jax.device_count())
  assert str(e.value) == (
      f'the device ran out of memory with {n} run{"s" * (n > 1)} per device '
      '(RESOURCE_EXHAUSTED); last intact checkpoint: step 50; train fewer runs per device '
      '(--config.sweep.seeds, --config.sweep.lrs) or a smaller model or train.batch_size in a '
      'new --workdir, or on more devices rerun the same command to resume')
  assert e.value.status == 2
  monkeypatch.undo()
  again = train.train_and_evaluate(_cfg(), str(w), progress=False)
  assert again['runs'] == ref_summary['runs']
  assert _rows(w) == (ref_rows, ref_jsonl)


def test_an_empty_newest_checkpoint_folder_is_set_aside_and_the_run_resumes_exactly(
    reference, tmp_path, capsys):
  ref_summary, ref_rows, ref_jsonl, ref_w = reference
  w = tmp_path / 'w'
  shutil.copytree(ref_w, w)  # the reference run, trained once for the module
  newest = w / 'checkpoints' / str(STEPS)
  shutil.rmtree(newest)  # a crash (or fsck) emptied it
  newest.mkdir()
  os.remove(w / 'summary.json')
  capsys.readouterr()
  again = train.train_and_evaluate(_cfg(), str(w), progress=False)
  out = capsys.readouterr().out
  assert (f'tinyjax: warning: checkpoint at step {STEPS} is unreadable (moved to '
          f'{w}/checkpoints.unreadable/{STEPS}); trying an older one\n') in out
  assert 'tinyjax: resuming runs from step 150\n' in out
  assert again['runs'] == ref_summary['runs']
  assert _rows(w) == (ref_rows, ref_jsonl)


def test_a_sweep_too_big_for_device_memory_is_refused_with_the_runs_that_fit(
    tmp_path, monkeypatch):
  cfg = _cfg(seeds=3)
  (group,) = sweep.expand(cfg)
  prog = train.program_for(group.config, train.build_task(group.config))
  hp = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
  run = memory.per_run_bytes(prog, hp, with_rows=True)
  fit3 = int((memory.nbytes(prog.data) + 3 * run) / memory.HEADROOM) + 1
  monkeypatch.setenv(memory.BUDGET_ENV, str(fit3))
  memory.check(prog, hp, 3, 1)  # three runs on one device fit exactly
  with pytest.raises(ConfigError) as e:
    memory.check(prog, hp, 4, 1)
  assert re.fullmatch(
      r'the sweep does not fit in device memory: 4 runs per device need about \S+ MB '
      r'\(\S+ MB a run, estimated from the shapes\), and a cpu device has \S+ MB '
      rf'\({memory.BUDGET_ENV}\); at most 3 runs per device fit: use fewer runs '
      r'\(--config.sweep.seeds, --config.sweep.lrs, --config.sweep.grid\)', str(e.value))
  with pytest.raises(ConfigError, match='at most 0 runs per device fit: use a smaller model'):
    monkeypatch.setenv(memory.BUDGET_ENV, '1000')
    train.train_and_evaluate(cfg, str(tmp_path / 'w'), progress=False)
  assert not (tmp_path / 'w').exists()  # refused before anything was written


def test_the_command_line_refuses_a_sweep_too_big_for_memory_in_one_line(tmp_path):
  w = tmp_path / 'w'
  p = subprocess.run(
      [sys.executable, '-m', 'tinyjax.run', '--config', 'configs/timmy.py:sweep',
       '--workdir', str(w), '--cpu_devices=1', *LENSES_OFF_FLAGS], cwd=ROOT,
      capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=ROOT, **{memory.BUDGET_ENV: '4000000'}))
  assert p.returncode == 2, p.stderr
  assert re.fullmatch(r'tinyjax: error: the sweep does not fit in device memory: 96 runs per '
                      r'device need about .*; at most \d+ runs per device fit: use fewer runs '
                      r'\(--config.sweep.seeds, --config.sweep.lrs, --config.sweep.grid\)\n',
                      p.stderr)
  assert not w.exists()


def test_no_fault_leaves_the_process_waiting(tmp_path):
  """Seven injection points (writer thread: columnar rows, metrics.jsonl, event
  file; orbax's commit thread; the checkpoint save; summary.json; the device),
  each failing at its first, middle and last call, in one process through
  tinyjax.run's main: each run ends within seconds with one line and status
  2, leaves no thread behind, and the process exits cleanly."""
  flags = ['--config', 'configs/timmy.py', '--config.train.steps=100',
           '--config.train.chunk_steps=50', '--config.checkpoint.every=50',
           '--config.checkpoint.log_spaced=False', '--config.sweep.seeds=2', '--noprogress',
           *LENSES_OFF_FLAGS]
  p = subprocess.run([sys.executable, 'tests/fault_harness.py', str(tmp_path), *flags],
                     cwd=ROOT, capture_output=True, text=True, timeout=600,
                     env=dict(os.environ, PYTHONPATH=ROOT))
  assert p.returncode == 0, p.stderr[-3000:]
  assert 'Traceback' not in p.stderr and 'Exception' not in p.stderr, p.stderr[-3000:]
  lines = [json.loads(l) for l in p.stdout.splitlines()]
  assert lines[-1] == {'done': True}
  runs = [l for l in lines if 'point' in l]
  assert sorted({r['point'] for r in runs}) == sorted(
      ['columns', 'jsonl', 'events', 'orbax_thread', 'orbax_save', 'summary', 'device'])
  assert len(runs) >= 18
  for r in runs:
    case = f'{r["point"]} call {r["at"]} of {r["total"]}'
    assert r['fired'] and r['status'] == 2, case
    assert r['seconds_after_fault'] < 10, case
    assert r['threads_left'] == [], case
    errors = [l for l in r['stderr'].splitlines() if l.startswith('tinyjax: error: ')]
    assert len(errors) == 1 and r['stderr'].endswith(errors[0] + '\n'), (case, r['stderr'])
    assert 'Traceback' not in r['stderr'], case
    kept = r['checkpoints']
    assert (f'; last intact checkpoint: step {kept[-1]}; ' if kept else
            '; no checkpoint yet, a rerun starts over; ') in errors[0], case
    workdir = os.path.join(str(tmp_path), f'{r["point"]}-{r["at"]}')
    assert errors[0].endswith(' to resume: python -m tinyjax.run ' + ' '.join(flags)
                              + f' --workdir {workdir}'), case
