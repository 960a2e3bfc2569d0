"""experiments/cost_phases.py: a job's start, device phase and tail, from
samples of every thread's CPU time."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import cost_phases  # noqa: E402

POOL_A, POOL_B, WRITER = 1, 2, 3


def _samples(pool_rate_at, writer_until=None, dt=0.1, n=100):
  """Samples every dt s: both pool threads at pool_rate_at(t) cores in all,
  the writer at one core until writer_until (then gone, as an ended thread)."""
  out, pool, writer = [], 0.0, 0.0
  for i in range(n + 1):
    t = i * dt
    if i:
      pool += pool_rate_at(t) * dt / 2
      writer += dt if writer_until is None or t <= writer_until else 0.0
    cpu = {POOL_A: pool, POOL_B: pool}
    if writer_until is None or t <= writer_until:
      cpu[WRITER] = writer
    out.append((t, cpu))
  return out


def _sampler():
  s = cost_phases.Sampler(0.1, start=False)
  s.names = {POOL_A: 'tf_XLAEigen', POOL_B: 'tf_XLAEigen', WRITER: 'tinyjax-writer'}
  return s


def test_the_device_phase_is_the_longest_busy_stretch_with_short_gaps_bridged():
  # busy 1-2 s (init's run), then 4-9 s with a 0.3 s gap at 6 s; idle after
  busy = lambda t: 2.0 if 1.0 < t <= 2.0 or (4.0 < t <= 9.0 and not 6.0 < t <= 6.3) else 0.2
  r = _sampler().phases(_samples(busy), 0.0, 10.0)
  assert r['phases'] == {'start': 4.1, 'device': 4.9, 'tail': 1.0}


def test_a_thread_that_ended_in_the_window_keeps_its_cpu_time():
  r = _sampler().phases(_samples(lambda t: 0.0, writer_until=3.0), 0.0, 10.0)
  assert r['phases'] is None
  assert r['thread_cpu'] == {'tinyjax-writer': 3.0}


def test_each_threads_cpu_is_split_at_the_phases_bounds():
  # the pool busy 4-9 s; the writer busy until 6 s: 4 s before the phase, 2 s in it
  busy = lambda t: 2.0 if 4.0 < t <= 9.0 else 0.2
  r = _sampler().phases(_samples(busy, writer_until=6.0), 0.0, 10.0)
  by = r['thread_cpu_by_phase']
  assert by['start']['tinyjax-writer'] == 4.1 and by['device']['tinyjax-writer'] == 1.9
  assert 'tinyjax-writer' not in by['tail']
  assert r['thread_cpu']['tinyjax-writer'] == 6.0
