"""The bench's stored runs pooled: what the ratio to the plain loop is over a
day on an unsteady host, not one run of three repetitions.

One run of `python -m tinyjax.bench` reports the median of its repetitions'
ratios. On a host whose speed drifts by 10-30% within the hour, one such
median lands on either side of a 1.2x line. This script reads several stored
runs and reports, per case, every repetition's ratio (tinyjax / plain loop,
the pair run back to back), their pooled median and quartiles, the share of
repetitions at or under the target, and a distribution-free interval for the
median ratio that takes each bench run (not each repetition: repetitions of
one run share the host's state) as one draw: the order statistics of the
runs' medians that cover the median with at least the stated confidence
(binomial, p = 1/2).

  python experiments/bench_pool.py --out experiments/results/bench_pooled.json \
      experiments/results/bench_cold_r3.json ...
"""

import argparse
import json
import math
import os
import statistics
import sys

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH

from tinyjax import bench  # noqa: E402


def median_interval(values, confidence=0.9):
  """(lo, hi, achieved confidence): order statistics x_(k) <= median <= x_(n+1-k)
  with the largest k whose coverage is at least `confidence`; (min, max, its
  coverage) when n is too small for that."""
  xs, n = sorted(values), len(values)
  cover = lambda k: 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n
  k = 1
  while k + 1 <= (n + 1) // 2 and cover(k + 1) >= confidence:
    k += 1
  return xs[k - 1], xs[n - k], round(cover(k), 3)


def pool(files, target=1.2, confidence=0.9):
  cases = {}
  for path in files:
    with open(path) as f:
      run = json.load(f)
    for c in run['cases']:
      secs = c['all_seconds']
      # (runs stored before the bench wrote its pairs: computed the bench's way)
      pairs = c.get('pair_ratios') or bench.steadiness(secs)['pair_ratios']
      case = cases.setdefault(f"{c['runs']}x{c['steps']}", {'runs': []})
      case['runs'].append({'file': path, 'pair_ratios': pairs, 'median': c['ratio'],
                           'tinyjax_seconds': secs['tinyjax'], 'unsteady': c.get('unsteady')})
  out = {}
  for name, case in cases.items():
    pairs = sorted(r for run in case['runs'] for r in run['pair_ratios'])
    medians = [run['median'] for run in case['runs']]
    secs = sorted(s for run in case['runs'] for s in run['tinyjax_seconds'])
    lo, hi, cover = median_interval(medians, confidence)
    q1, q2, q3 = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else pairs * 3
    out[name] = {
        'bench_runs': len(case['runs']), 'repetitions': len(pairs),
        'pooled_median': round(statistics.median(pairs), 3),
        'pooled_quartiles': [round(q1, 3), round(q3, 3)],
        'min': pairs[0], 'max': pairs[-1],
        'percent_at_or_under_target': round(100 * sum(r <= target for r in pairs) / len(pairs)),
        'median_of_run_medians': round(statistics.median(medians), 3),
        'run_medians_interval': [lo, hi], 'interval_confidence': cover,
        'tinyjax_seconds': {'median': statistics.median(secs), 'min': secs[0], 'max': secs[-1]},
        'runs': case['runs']}
  return {'target': target, 'confidence': confidence, 'files': list(files), 'cases': out}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('files', nargs='+', help='JSON files written by python -m tinyjax.bench')
  ap.add_argument('--target', type=float, default=1.2, help='the ratio to compare with')
  ap.add_argument('--confidence', type=float, default=0.9, help='of the median\'s interval')
  ap.add_argument('--out', default='', help='where to write the pooled figures (JSON)')
  args = ap.parse_args()
  res = pool(args.files, args.target, args.confidence)
  for name, c in res['cases'].items():
    print(f"{name}: {c['repetitions']} repetitions in {c['bench_runs']} runs; pooled median "
          f"{c['pooled_median']}x (quartiles {c['pooled_quartiles'][0]}-{c['pooled_quartiles'][1]}); "
          f"<= {args.target}x in {c['percent_at_or_under_target']}%; the runs' medians "
          f"{c['median_of_run_medians']}x, {c['interval_confidence']:.0%} interval "
          f"{c['run_medians_interval'][0]}-{c['run_medians_interval'][1]}x; tinyjax "
          f"{c['tinyjax_seconds']['min']}-{c['tinyjax_seconds']['max']} s")
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(res, f, indent=1)


if __name__ == '__main__':
  main()
