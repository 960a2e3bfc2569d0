"""experiments/bench_pool.py: the bench's stored runs pooled."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import bench_pool  # noqa: E402


def test_the_medians_interval_is_the_order_statistics_that_cover_it():
  # n = 9: x_(2)..x_(8) covers the median with 1 - 2 * (1 + 9) / 512 = 0.961;
  # x_(3)..x_(7) only with 0.820, under 0.9.
  assert bench_pool.median_interval(range(1, 10), 0.9) == (2, 8, 0.961)
  assert bench_pool.median_interval(range(1, 10), 0.8) == (3, 7, 0.82)
  # Too few draws for 0.9: the whole range and what it covers (1 - 2 / 8).
  assert bench_pool.median_interval([3, 1, 2], 0.9) == (1, 3, 0.75)


def _bench_file(path, pairs):
  cases = [{'runs': 64, 'steps': 6000, 'ratio': r,
            'all_seconds': {'tinyjax': [t for t, _ in p], 'plain': [q for _, q in p]},
            'pair_ratios': [round(t / q, 3) for t, q in p]} for r, p in pairs]
  path.write_text(json.dumps({'cases': cases}))
  return str(path)


def test_pooling_takes_every_repetition_and_each_runs_median(tmp_path):
  a = _bench_file(tmp_path / 'a.json', [(1.1, [(11.0, 10.0), (13.0, 10.0)])])
  b = _bench_file(tmp_path / 'b.json', [(1.25, [(12.5, 10.0)])])
  c = bench_pool.pool([a, b], target=1.2)['cases']['64x6000']
  assert c['repetitions'] == 3 and c['bench_runs'] == 2
  assert c['pooled_median'] == 1.25 and c['min'] == 1.1 and c['max'] == 1.3
  assert c['percent_at_or_under_target'] == 33
  assert c['median_of_run_medians'] == 1.175
  assert c['tinyjax_seconds'] == {'median': 12.5, 'min': 11.0, 'max': 13.0}
