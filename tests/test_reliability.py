"""Reliability: bad input, crashes, interrupts, disk errors, determinism."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import LENSES_OFF_FLAGS
from tests.conftest import ROOT
from tinyjax import generate
from tinyjax import train
from tinyjax import writer
from tinyjax.tasks import ConfigError

COLOURS = ('red', 'orange', 'yellow', 'green', 'blue', 'violet')


@pytest.mark.parametrize('field,value,needle', [
    ('optimizer.lr', 0.0, 'optimizer.lr'),
    ('train.steps', 0, 'train.steps'),
    ('train.log_every', -1, 'train.log_every'),
    ('sweep.seeds', -2, 'sweep.seeds'),
    ('sweep.lrs', (0.1, -0.1), 'sweep.lrs'),
    ('model.n_heads', 3, 'n_heads'),
    ('model.norm', 'batchnorm', 'model.norm'),
    ('task.held_out', ('purple',), 'task.held_out'),
    ('task.held_out', COLOURS, 'empty training set'),
    ('eval.prompts', ('red', 'purple'), 'purple'),
    ('sweep.grid', {'model': {'widht': (1, 2)}}, 'model.widht'),
    ('sweep.grid', {'seed': (1, 2)}, 'sweep.seeds'),
    ('sweep.grid', {'optimizer': {'weight_decay': ('a', 'b')}}, 'does not fit'),
    ('milestones', {'x': ('loss', '=', 1.0)}, 'milestones.x'),
])
def test_bad_config_is_refused_before_anything_is_written(timmy, tmp_path, field, value,
                                                         needle):
  *parents, leaf = field.split('.')
  node = timmy
  for p in parents:
    node = node[p]
  with timmy.unlocked():
    node[leaf] = value
  w = tmp_path / 'w'
  with pytest.raises(ConfigError, match=needle) as e:
    train.train_and_evaluate(timmy, str(w), progress=False)
  assert '\n' not in str(e.value)
  assert not w.exists()


def _cfg(timmy, steps=200, seeds=0):
  with timmy.unlocked():
    timmy.train.steps, timmy.train.chunk_steps = steps, 50
    timmy.checkpoint.every, timmy.checkpoint.log_spaced = 50, False
    timmy.sweep.seeds = seeds
  return timmy


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """Timmy 200 steps, uninterrupted: (summary, workdir). The determinism, the
  truncated-checkpoint and the full-disk tests compare their runs with it
  (one training instead of one each)."""
  from tests.conftest import lenses_off
  from configs import timmy
  w = tmp_path_factory.mktemp('ref') / 'w'
  return train.train_and_evaluate(_cfg(lenses_off(timmy.get_config())), str(w),
                                  progress=False), w


def test_same_config_and_seed_give_bitwise_identical_metrics(timmy, tmp_path, reference):
  ref, ref_w = reference
  b = train.train_and_evaluate(_cfg(timmy), str(tmp_path / 'b'), progress=False)
  assert b == ref
  read = lambda w: open(w / 'seed=0' / 'metrics.jsonl').read()
  assert read(tmp_path / 'b') == read(ref_w)


def _cli(workdir, *extra):
  return [sys.executable, '-m', 'tinyjax.run', '--config', 'configs/timmy.py',
          '--config.train.chunk_steps=50', '--config.checkpoint.every=50',
          '--config.checkpoint.log_spaced=false', '--workdir', str(workdir), '--noprogress',
          *LENSES_OFF_FLAGS, *extra]


def _wait_for(pred, proc, timeout=120):
  t = time.time()
  while not pred():
    assert proc.poll() is None, proc.communicate()
    assert time.time() - t < timeout
    time.sleep(0.05)


def _ckpts(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(x) for x in os.listdir(d) if x.isdigit()) if os.path.isdir(d) else []


@pytest.mark.slow  # too long for the CI suite's 10 minutes: python -m pytest -m slow
def test_sigkill_of_a_sweep_then_rerun_reproduces_the_uninterrupted_summary(tmp_path):
  args = ('--config.sweep.seeds=3', '--config.train.steps=800')
  env = dict(os.environ, PYTHONPATH=ROOT)
  ref = subprocess.run(_cli(tmp_path / 'ref', *args), cwd=ROOT, env=env,
                       capture_output=True, text=True)
  assert ref.returncode == 0, ref.stderr
  w = tmp_path / 'w'
  p = subprocess.Popen(_cli(w, *args), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  _wait_for(lambda: len(_ckpts(w)) >= 3, p)  # killed mid-run, maybe mid-save
  p.send_signal(signal.SIGKILL)
  p.wait()
  assert not (w / 'summary.json').exists()
  again = subprocess.run(_cli(w, *args), cwd=ROOT, env=env, capture_output=True, text=True)
  assert again.returncode == 0, again.stderr
  assert 'resuming' in again.stdout
  assert json.load(open(w / 'summary.json')) == json.load(open(tmp_path / 'ref' / 'summary.json'))
  for seed in range(3):
    rows = open(w / f'seed={seed}' / 'metrics.jsonl').read()
    assert rows == open(tmp_path / 'ref' / f'seed={seed}' / 'metrics.jsonl').read()
    steps = [json.loads(l)['step'] for l in rows.splitlines()]
    assert steps == list(range(0, 801, 10))  # none missing, none twice


def test_sigint_finishes_the_chunk_checkpoints_summarises_and_exits_130(tmp_path):
  env = dict(os.environ, PYTHONPATH=ROOT)
  w = tmp_path / 'w'
  args = ('--config.train.steps=100000',)
  p = subprocess.Popen(_cli(w, *args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
  _wait_for(lambda: len(_ckpts(w)) >= 2, p)
  p.send_signal(signal.SIGINT)
  out, err = p.communicate(timeout=120)
  assert p.returncode == 130, err
  assert 'resume with the same command' in err
  summary = json.load(open(w / 'summary.json'))
  (run,) = summary['runs']
  assert run['complete'] is False
  stopped = run['final']['step']
  assert stopped == _ckpts(w)[-1] and stopped % 50 == 0 and 0 < stopped < 100000
  rows = writer.read_jsonl(str(w / 'seed=0' / 'metrics.jsonl'))
  assert [r['step'] for r in rows] == list(range(0, stopped + 1, 10))


def test_truncated_newest_checkpoint_is_detected_and_the_previous_one_used(
    timmy, tmp_path, capsys, reference):
  cfg = _cfg(timmy)
  ref, ref_w = reference
  w = tmp_path / 'w'
  shutil.copytree(ref_w, w)  # the same run, trained once (the reference)
  newest = w / 'checkpoints' / '200'
  files = [os.path.join(d, f) for d, _, fs in os.walk(newest) for f in fs
           if os.path.getsize(os.path.join(d, f)) > 64 and 'ocdbt.process' in d]
  assert files
  cut = {}
  for f in files:  # a crash or a bad disk cut the data files short
    with open(f, 'r+b') as fh:
      fh.truncate(os.path.getsize(f) // 3)
    cut[os.path.relpath(f, newest)] = os.path.getsize(f)
  os.remove(w / 'summary.json')
  capsys.readouterr()
  again = train.train_and_evaluate(cfg, str(w), progress=False)
  assert again == ref
  # The README's promise: a warning, the damaged checkpoint moved to
  # checkpoints.unreadable/ (kept, its cut files as they were), the previous
  # one (150) used, and step 200 saved again in its place.
  out = capsys.readouterr().out
  moved = w / 'checkpoints.unreadable' / '200'
  assert (f'tinyjax: warning: checkpoint at step 200 is unreadable (moved to {moved}); '
          'trying an older one' in out.splitlines()), out
  assert 'step 150 is unreadable' not in out
  assert sorted(os.listdir(w / 'checkpoints.unreadable')) == ['200']
  for rel, size in cut.items():
    assert os.path.getsize(moved / rel) == size, rel
  assert sorted(int(s) for s in os.listdir(w / 'checkpoints') if s.isdigit()) == [
      50, 100, 150, 200]


def test_a_full_disk_gives_a_clear_error_and_earlier_checkpoints_resume(
    timmy, tmp_path, monkeypatch, reference):
  cfg = _cfg(timmy, steps=200)
  ref, _ = reference
  real = writer.RunWriter.write

  def write(self, step, metrics):
    if step >= 120:
      raise OSError(28, 'No space left on device', 'metrics.jsonl')
    return real(self, step, metrics)

  monkeypatch.setattr(writer.RunWriter, 'write', write)
  w = tmp_path / 'w'
  with pytest.raises(train.WriteError) as e:
    train.train_and_evaluate(cfg, str(w), progress=False)
  # The rows of steps 120.. fail: the flush before the checkpoint at 150 raises.
  assert str(e.value) == ('no space left on device writing metrics.jsonl; last intact '
                          'checkpoint: step 100; free some space, then rerun the same '
                          'command to resume')
  assert e.value.status == 2
  assert _ckpts(w) == [50, 100]
  monkeypatch.setattr(writer.RunWriter, 'write', real)
  assert train.train_and_evaluate(cfg, str(w), progress=False) == ref


def test_an_unwritable_workdir_is_a_clear_error(timmy, tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  # A workdir that cannot be created is the person's mistake (exit 2 in the
  # CLI, before anything is written); failures while writing are WriteError.
  with pytest.raises(ConfigError, match='cannot be created .Not a directory'):
    train.train_and_evaluate(_cfg(timmy, steps=20), str(blocker / 'w'), progress=False)


def test_generate_refuses_an_out_of_vocabulary_prompt(reference):
  _, w = reference  # generate only reads the workdir
  with pytest.raises(ConfigError, match="--prompt: .*'purple'"):
    generate.generate(str(w), ['purple'])
  assert generate.generate(str(w), ['blue'])['blue'].startswith(' ')
