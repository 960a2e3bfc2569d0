"""The accelerator suite runs (at --smoke sizes, on the CPU) and writes its JSON."""

import json
import subprocess
import sys

from tests.conftest import ROOT

JOBS = ('timmy', 'grokking', 'tiny_llm', 'guppylm')
JOB_KEYS = {'runs', 'steps', 'seconds', 'compile_seconds', 'run_steps_per_second',
            'final_loss_median', 'peak_device_bytes', 'estimated_bytes'}


def test_the_accelerator_suite_smoke_writes_every_figure(tmp_path):
  out = tmp_path / 'accelerator.json'
  p = subprocess.run([sys.executable, '-m', 'tinyjax.bench', '--suite', 'accelerator', '--smoke',
                      f'--out={out}'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-2000:]
  r = json.loads(out.read_text())
  assert r['suite'] == 'accelerator' and r['smoke'] is True and r['backend'] == 'cpu'
  assert set(r['jobs']) == set(JOBS)
  for name, job in r['jobs'].items():
    assert set(job) == JOB_KEYS, name
    assert job['seconds'] > 0 and job['compile_seconds'] > 0, (name, job)  # (compile: summed over threads)
    assert job['run_steps_per_second'] > 0 and job['steps'] == 20, (name, job)
    assert 0 < job['final_loss_median'] < 20, (name, job)  # trained, finite
    assert job['peak_device_bytes'] is None  # the CPU reports none
    assert job['estimated_bytes'] > 0
  assert [t['runs'] for t in r['throughput']] == [1, 2]
  assert all(t['us_per_run_step'] > 0 and t['first_seconds'] > t['seconds'] for t in r['throughput'])
  assert r['jobs']['timmy']['runs'] == 2 and r['jobs']['grokking']['runs'] == 2
  assert r['total_seconds'] > 0 and r['budget_seconds'] == 480
  assert f'wrote {out}' in p.stdout
