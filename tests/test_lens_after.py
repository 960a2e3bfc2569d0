"""python -m tinyjax.lens: checkpoint lenses on a finished run's checkpoints,
equal to the ones the training loop measures at those checkpoints."""

import glob
import json
import os
import shutil

import numpy as np

from tests.conftest import run_cli

# The restricted LLC (random: the same key per (seed, step) is part of the
# claim). One lens: each lens program compiles in 9-20 CPU s here.
LENS = dict(llc_parts=('modules',), llc_chains=2, llc_draws=3, llc_burnin=2)


def _config():
  from configs import timmy
  c = timmy.get_config('smoke')
  with c.unlocked():
    c.sweep.seeds = 2  # two runs: the lens program is vmapped over the group
    c.train.update(steps=20, log_every=10, chunk_steps=10)
    c.checkpoint.update(every=10, log_spaced=False)
    # No decoding: nothing here reads it, and its programs add compile time.
    c.eval.update(track_generations=False, prompts=())
    c.lenses.update(**LENS)
  return c


def _rows(path):
  return {r['step']: r for r in map(json.loads, open(path))}


def test_lenses_after_training_equal_the_training_time_lenses(tmp_path):
  from tinyjax import lens
  from tinyjax import results
  from tinyjax import train
  on, off = str(tmp_path / 'on'), str(tmp_path / 'off')
  train.train_and_evaluate(_config(), on, progress=False)  # the lenses measured in training
  # The same runs trained with those lenses off: training does not depend on
  # the lenses, so the copy's checkpoints are that run's; its config.json and
  # files say the lenses were off (training it again would double the test).
  shutil.copytree(on, off)
  for path in glob.glob(os.path.join(off, '**', 'lenses*'), recursive=True):
    (shutil.rmtree if os.path.isdir(path) else os.remove)(path)
  config = json.load(open(os.path.join(off, 'config.json')))
  config['lenses'].update(llc_parts=[])
  json.dump(config, open(os.path.join(off, 'config.json'), 'w'))
  assert not os.path.exists(os.path.join(off, 'seed=0', 'lenses.jsonl'))
  before = sorted(os.listdir(off))
  out = lens.run(off, dict(LENS), steps=[10, 20])
  assert out == os.path.join(off, 'lenses_after')
  assert sorted(os.listdir(off)) == sorted(before + ['lenses_after'])  # nothing else written
  assert results.run_rows(out, 'lenses')['seed=1'][0]['step'] == 10
  for seed in (0, 1):
    want = _rows(os.path.join(on, f'seed={seed}', 'lenses.jsonl'))
    got = _rows(os.path.join(out, f'seed={seed}', 'lenses.jsonl'))
    assert sorted(got) == sorted(want) == [10, 20]
    for step in (10, 20):
      assert sorted(got[step]) == sorted(want[step])
      keys = [k for k in want[step] if k != 'step']
      assert 'llc_part/layer1/mlp' in keys and 'llc_part_below/embed' in keys
      # The same compiled program on the same state (a checkpoint reads back
      # bit for bit) with the same key per (seed, step): the same bits.
      np.testing.assert_array_equal([got[step][k] for k in keys], [want[step][k] for k in keys],
                                    err_msg=f"seed {seed} step {step}")
  # The columnar rows too (tinyjax.results reads them as it reads training's).
  a, _ = results.load(on, 'lenses')
  b, _ = results.load(out, 'lenses')  # OUT has the workdir's summary.json
  assert len(a) == len(b) == 4
  np.testing.assert_array_equal(b['llc_part/embed'], a['llc_part/embed'])
  # --steps: one checkpoint only; a second call replaces the output's rows.
  lens.run(off, dict(LENS), steps=[20])
  assert sorted(_rows(os.path.join(out, 'seed=0', 'lenses.jsonl'))) == [20]


def test_the_command_refuses_anything_but_lens_settings(tmp_path):
  w = str(tmp_path / 'nowhere')
  r = run_cli('-m', 'tinyjax.lens', '--workdir', w, '--config.train.steps=5',
              '--config.lenses.llc=True', timeout=120)
  assert r.returncode == 2, r.stderr
  assert r.stderr.strip().splitlines() == [
      'tinyjax: error: --config.train.steps: only lens settings (--config.lenses.FIELD=VALUE) '
      'may be overridden; the rest is the workdir\'s config.json']
  r = run_cli('-m', 'tinyjax.lens', '--workdir', w, '--config.lenses.llc_partz=modules',
              timeout=120)
  assert r.returncode == 2
  assert r.stderr.startswith('tinyjax: error: --config.lenses.llc_partz: no such lens field')
  r = run_cli('-m', 'tinyjax.lens', '--workdir', w, '--config.lenses.llc=True', timeout=120)
  assert r.returncode == 2
  assert 'no config.json' in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_module_imports_beside_the_other_entry_points():
  """Its flags are defined only when it runs as the command (tinyjax.generate
  also defines --workdir: importing both in one process raised)."""
  import subprocess
  import sys
  r = subprocess.run([sys.executable, '-c', 'import tinyjax.generate, tinyjax.lens, tinyjax.export'],
                     capture_output=True, text=True, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert r.returncode == 0, r.stderr[-2000:]
