"""Two processes on 127.0.0.1 (jax.distributed, gloo) train the sweep that one
process trains, loss for loss; each writes its own runs; resume works."""

import pytest

import json
import os
import shutil
import socket
import subprocess
import sys

import pandas as pd

from tests.conftest import LENSES_OFF_FLAGS, ROOT, run_cli
from tinyjax import results

# 4 seeds x 60 steps of Timmy, checkpoints at 30 and 60; eval every 30.
ARGS = ('-m', 'tinyjax.run', '--config', 'configs/timmy.py:smoke', '--progress=false',
        '--config.sweep.seeds=4', '--config.train.steps=60', '--config.train.chunk_steps=30',
        '--config.checkpoint.every=30', '--config.checkpoint.log_spaced=False',
        '--config.eval.every=30', '--config.eval.max_new_tokens=6', *LENSES_OFF_FLAGS)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(workdir):
  port = _free_port()
  env = dict(os.environ, PYTHONPATH=ROOT)
  procs = [subprocess.Popen(
      [sys.executable, *ARGS, f'--workdir={workdir}', '--cpu_devices=1',
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2', f'--process_id={i}'],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-3000:]
  return outs


def _runs(workdir):
  with open(os.path.join(workdir, 'summary.json')) as f:
    s = json.load(f)
  return s, {r['name']: {k: v for k, v in r.items() if k != 'files'} for r in s['runs']}


@pytest.mark.slow  # too long for the CI suite's 10 minutes: python -m pytest -m slow
def test_two_processes_write_the_one_process_summary_and_resume(tmp_path):
  one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
  r = run_cli(*ARGS, f'--workdir={one}', '--cpu_devices=2')
  assert r.returncode == 0, r.stderr[-3000:]
  outs = _two_processes(two)
  assert '4 runs (written to report.md' in outs[0] and 'report.md' not in outs[1]

  s1, runs1 = _runs(one)
  s2, runs2 = _runs(two)
  assert s2['processes'] == 2 and len(s2['devices']) == 2
  assert list(runs1) == list(runs2) == [f'seed={i}' for i in range(4)]
  assert runs1 == runs2  # every final metric, milestone and generation, exactly
  # Each process wrote its own runs' columnar files; together, the same table.
  names = sorted(os.listdir(os.path.join(two, 'metrics')))
  assert {n.split('.')[1] for n in names} == {'p0', 'p1'}
  df1, _ = results.load(one)
  df2, _ = results.load(two)
  pd.testing.assert_frame_equal(df1, df2)
  for d in (one, two):  # per-run files and the across-seed TensorBoard file
    assert all(os.path.exists(os.path.join(d, f'seed={i}', 'metrics.jsonl')) for i in range(4))
    assert sorted(os.listdir(os.path.join(d, 'across_seeds', 'all'))) == ['mean', 'p10', 'p50', 'p90']
    assert os.listdir(os.path.join(d, 'across_seeds', 'all', 'p50'))

  # Resume: lose the last checkpoint and the end of the job; the same command
  # restores step 30 in both processes and finishes with the same numbers.
  shutil.rmtree(os.path.join(two, 'checkpoints', '60'))
  os.remove(os.path.join(two, 'summary.json'))
  _two_processes(two)
  _, runs3 = _runs(two)
  assert runs3 == runs1
  pd.testing.assert_frame_equal(results.load(two)[0], df1)


def test_distributed_flag_mistakes_exit_2_with_one_line(tmp_path):
  cases = [(['--num_processes=2'], 'go together'),
           (['--coordinator_address=nowhere', '--num_processes=2', '--process_id=0'],
            'HOST:PORT'),
           (['--coordinator_address=127.0.0.1:1', '--num_processes=2', '--process_id=2'],
            '--process_id: 2'),
           (['--distributed', '--num_processes=2'], 'leave out')]
  for flags, words in cases:
    r = run_cli(*ARGS, f'--workdir={tmp_path / "w"}', *flags)
    assert r.returncode == 2, (flags, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], (flags, r.stderr)
  assert not os.path.exists(tmp_path / 'w')
