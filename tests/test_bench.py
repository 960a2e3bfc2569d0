"""tinyjax.bench: the plain loop trains the same model, and the load is recorded."""

import pytest

import subprocess
import sys

import numpy as np

from tests.conftest import lenses_off
from tinyjax import bench


@pytest.mark.slow  # too long for the CI suite's 10 minutes: python -m pytest -m slow
def test_the_plain_loop_reaches_tinyjaxs_final_loss_and_the_load_is_recorded(tmp_path):
  cfg = lenses_off(bench.timmy(2, 20))
  with cfg.unlocked():  # the training loop only: no decoding, one checkpoint
    cfg.eval.update(track_generations=False, max_new_tokens=1)
    cfg.milestones = {}  # none: the state's milestones still checkpoint
    cfg.checkpoint.log_spaced = False
  r = bench.bench_case(cfg, str(tmp_path), repeats=1, plain_1=False)
  check = r['final_loss']['plain']
  # Same init, data, loss and SGD: float32 rounding apart, the same numbers
  # after 20 steps (a wrong lr, seed or loss is off by 1e-2 or more).
  assert check['same'] and check['max_rel_diff'] <= 1e-5, check
  assert 0.5 < r['final_loss']['tinyjax_mean'] < 2.5  # Timmy's loss early on
  for name in ('plain', 'tinyjax'):
    (load,) = r['load'][name]
    assert len(load['loadavg_before']) == 3 and len(load['loadavg_after']) == 3
    assert load['other_cores'] >= 0.0
  assert r['under_load'] == (max(l[0]['other_cores'] for l in r['load'].values())
                             > bench.LOADED_OTHER_CORES)
  line = bench.describe(r)
  assert 'final loss plain same' in line
  assert ('UNDER LOAD' in line) == r['under_load']


def test_the_loss_check_fails_on_a_different_loss():
  ref = np.array([1.0, 2.0])
  assert bench.loss_check({'tinyjax': ref, 'plain': ref * (1 + 1e-6)})['plain']['same']
  for other in (ref + [0.0, 1e-3], [1.0, np.nan]):
    assert not bench.loss_check({'tinyjax': ref, 'plain': np.asarray(other)})['plain']['same']


def test_other_processes_count_as_load():
  busy = [sys.executable, '-c',
          'import time\nt = time.time()\nwhile time.time() - t < 1.0: pass']
  _, load = bench.measured(lambda: subprocess.run(busy, check=True))
  assert load['other_cores'] >= 0.5, load  # the child kept about one core busy


def test_each_repetition_has_its_own_ratio_and_an_unsteady_host_is_named():
  times = {'tinyjax': [47.2, 42.67, 40.0], 'plain': [45.48, 35.85, 40.0]}
  st = bench.steadiness(times)
  assert st == {'pair_ratios': [1.038, 1.19, 1.0], 'pair_median': 1.038, 'plain_spread': 1.269,
                'unsteady': True}
  r = {'runs': 64, 'steps': 6000, 'seconds': {'tinyjax': 42.67, 'plain': 40.0}, 'ratio': 1.067,
       'final_loss': {'tinyjax_mean': 0.01}, 'under_load': False, **st}
  line = bench.describe(r)
  assert '(each repetition 1.0-1.19x, their median 1.038x)' in line
  assert "[UNSTEADY HOST: the plain loop's repetitions differ by 27%;" in line
  steady = bench.steadiness({'tinyjax': [23.0, 24.0], 'plain': [22.0, 23.0]})
  assert steady['unsteady'] is False and steady['plain_spread'] == 1.045
  assert 'UNSTEADY' not in bench.describe({**r, **steady})


def test_repetitions_alternate_the_order_of_the_jobs(monkeypatch, tmp_path):
  """plain, tinyjax, then tinyjax, plain, ...: a host that slows down over the
  minutes (as this 2-core VM does) then favours neither job."""
  order = []

  def fake(name):
    def job(cfg, *a, **k):
      order.append(name)
      return 1.0, np.ones(2)
    return job
  monkeypatch.setattr(bench, 'plain_loop', fake('plain'))
  monkeypatch.setattr(bench, 'run_tinyjax', fake('tinyjax'))
  r = bench.bench_case(bench.timmy(2, 20), str(tmp_path), repeats=4, plain_1=False)
  assert order == ['plain', 'tinyjax', 'tinyjax', 'plain'] * 2
  assert len(r['pair_ratios']) == 4  # each repetition's own pair, whatever its order
