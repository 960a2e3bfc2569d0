r"""The sparse-parity study: 32 seeds per (n, k) as one vmapped sweep each;
the breakthrough step against n, and the hidden measure around it.

  python examples/sparse_parity/study.py            # the grid below (~1 h, shared 2-core CPU)
  python examples/sparse_parity/study.py --k 3      # one k only
  python examples/sparse_parity/study.py --tables   # only re-read the workdirs

Every point is `config.py:sweep` with task.n, task.k and train.steps set (through
tinyjax.api, the same call as `python -m tinyjax.run`), trained into
runs/sparse_parity/k<k>_n<n> (resumed if it is there). Writes
experiments/results/sparse_parity.json (per point: every seed's breakthrough
step, median, p10, p90, how many seeds reached it within the steps; the
measure's median curve aligned at each seed's breakthrough) and the figure
docs/results/sparse_parity.png. Seeds that do not break through within
train.steps are counted, not dropped; the median is reported only where more
than half did.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import warnings

warnings.filterwarnings('ignore', 'All-NaN')

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
RUNS = os.path.join(ROOT, 'runs', 'sparse_parity')
OUT_JSON = os.path.join(ROOT, 'experiments', 'results', 'sparse_parity.json')
OUT_PNG = os.path.join(ROOT, 'docs', 'results', 'sparse_parity.png')

# (k, n) -> train.steps, chosen before the grid ran from a first 32-seed run of
# n = 20, k = 3 (median 675): at least 1.5x the median expected if time grew
# like n^k (it grew more slowly: every seed finished), within what the shared
# 2-core CPU did in about an hour for the whole grid (load average 12-17).
GRID = {
    (3, 10): 500, (3, 15): 1000, (3, 20): 2000, (3, 25): 3000, (3, 40): 3000,
    (2, 10): 500, (2, 20): 1000, (2, 30): 1500,
}
MEASURES = ('mass_S', 'norm_S', 'norm_rest', 'dist_init')
WINDOW = 2000  # steps before the breakthrough in the aligned curves


def workdir(k, n):
  return os.path.join(RUNS, f'k{k}_n{n}')


def config_for(k, n, steps):
  from tinyjax import api
  every = 10 if steps <= 1000 else 25 if steps <= 2000 else 50  # rows and evals
  return api.load_config(os.path.join(HERE, 'config.py:sweep'), {
      'task.n': n, 'task.k': k, 'train.steps': steps, 'train.log_every': every,
      'eval.every': every, 'train.chunk_steps': min(steps, 2000),
      'checkpoint.every': min(steps, 2000)})


def train(k, n, steps):
  from tinyjax import api
  t = time.time()
  api.train(config_for(k, n, steps), workdir(k, n), progress=False)
  return time.time() - t


def done(k, n):
  path = os.path.join(workdir(k, n), 'summary.json')
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return all(r['complete'] for r in json.load(f)['runs'])


def point(k, n, steps):
  """One (n, k) point's numbers, from its workdir."""
  from tinyjax import results
  df, summary = results.load(workdir(k, n))
  runs = summary['runs']
  bt = [r['breakthrough_step'] for r in runs]
  hit = np.array([b for b in bt if b is not None], float)
  out = {'n': n, 'k': k, 'steps': steps, 'seeds': len(runs), 'reached': len(hit),
         'breakthrough_steps': bt,
         'half_steps': [r['half_step'] for r in runs]}
  if len(hit) * 2 > len(runs):  # censored seeds count as later than every step
    b = np.array([x if x is not None else np.inf for x in bt])
    out.update(median=float(np.median(b)), p10=float(np.percentile(b, 10)),
               p90=float(np.percentile(b, 90)))
  # The hidden measure against steps from each seed's breakthrough.
  log_every = int(df['step'].diff()[df['step'].diff() > 0].min())
  rel = np.arange(-WINDOW, 501, log_every)
  curves = {m: [] for m in MEASURES}
  for r in runs:
    if r['breakthrough_step'] is None:
      continue
    rows = df[df.run == r['name']].dropna(subset=['lens/hidden_progress/mass_S'])
    s = rows['step'].to_numpy() - r['breakthrough_step']
    for m in MEASURES:
      v = rows[f'lens/hidden_progress/{m}'].to_numpy()
      curves[m].append(np.interp(rel, s, v, left=np.nan, right=np.nan))
  out['aligned'] = {'rel_step': rel.tolist(), 'seeds': len(curves['mass_S']),
                    **{m: _finite(np.nanmedian(np.array(c), 0)) if c else [] for m, c in
                       curves.items()}}
  # The loss curve's median over seeds (plateau then drop), every logged step.
  med = df.groupby('step')[['loss', 'test/accuracy']].median()
  med = med.dropna(subset=['test/accuracy'])
  out['median_curve'] = {'step': med.index.tolist(), 'test_accuracy': med['test/accuracy'].tolist()}
  return out


def _finite(a):
  """A list with NaN as None (strict JSON)."""
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return [float(x) if np.isfinite(x) else None for x in a]


def fit(points, k):
  """Least-squares slope of log(median breakthrough) against log n."""
  ps = [p for p in points if p['k'] == k and 'median' in p and np.isfinite(p['median'])]
  if len(ps) < 2:
    return None
  x, y = np.log([p['n'] for p in ps]), np.log([p['median'] for p in ps])
  return float(np.polyfit(x, y, 1)[0])


def figure(points):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
  for k, marker in ((2, 's'), (3, 'o')):
    ps = [p for p in points if p['k'] == k and 'median' in p]
    if not ps:
      continue
    n = [p['n'] for p in ps]
    med = np.array([p['median'] for p in ps])
    err = [med - [p['p10'] for p in ps], np.array([p['p90'] for p in ps]) - med]
    slope = fit(points, k)
    ax[0].errorbar(n, med, yerr=err, marker=marker, capsize=3,
                   label=f'k = {k}' + (f' (slope {slope:.2f})' if slope is not None else ''))
  ax[0].set(xscale='log', yscale='log', xlabel='n (bits)', ylabel='breakthrough step',
            title='median and p10-p90 over 32 seeds')
  ax[0].legend()
  k3 = [p for p in points if p['k'] == 3]
  for p in k3:
    c = p['median_curve']
    ax[1].plot(c['step'], c['test_accuracy'], label=f'n = {p["n"]}')
  ax[1].set(xlabel='step', ylabel='test accuracy (median over seeds)', xscale='log',
            title='k = 3: a plateau at chance, then a jump')
  ax[1].legend(fontsize=8)
  for p in k3:
    a = p['aligned']
    if a['mass_S']:
      mass = np.array([np.nan if v is None else v for v in a['mass_S']])
      ax[2].plot(a['rel_step'], mass * p['n'] / p['k'], label=f'n = {p["n"]}')
  ax[2].axvline(0, color='grey', lw=0.8)
  ax[2].set(xlabel='steps from each seed\'s breakthrough', ylabel='mass_S x n / k (1 = init)',
            title='k = 3: weight mass on S, aligned (median)')
  ax[2].legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(OUT_PNG), exist_ok=True)
  fig.savefig(OUT_PNG, dpi=110)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--k', type=int, default=None)
  ap.add_argument('--tables', action='store_true')
  args = ap.parse_args()
  grid = {kn: s for kn, s in GRID.items() if args.k is None or kn[0] == args.k}
  times = {}
  if os.path.exists(OUT_JSON):  # the wall times of points trained by an earlier call
    with open(OUT_JSON) as f:
      times = json.load(f).get('wall_seconds_under_load', {})
  if not args.tables:
    for (k, n), steps in grid.items():
      if done(k, n):
        continue
      times[f'k{k}_n{n}'] = train(k, n, steps)
      print(f'k={k} n={n}: {times[f"k{k}_n{n}"]:.0f} s (under load)', flush=True)
  points = [point(k, n, s) for (k, n), s in GRID.items() if os.path.exists(
      os.path.join(workdir(k, n), 'summary.json'))]
  out = {'command': 'python examples/sparse_parity/study.py', 'grid': {
      f'k{k}_n{n}': s for (k, n), s in GRID.items()},
         'slope_log_median_vs_log_n': {f'k{k}': fit(points, k) for k in (2, 3)},
         'wall_seconds_under_load': times, 'points': points}
  os.makedirs(os.path.dirname(OUT_JSON), exist_ok=True)
  with open(OUT_JSON, 'w') as f:
    json.dump(out, f, indent=1)
  figure(points)
  for p in points:
    print(f"k={p['k']} n={p['n']}: {p['reached']}/{p['seeds']} reached; median "
          f"{p.get('median')} p10 {p.get('p10')} p90 {p.get('p90')}")
  print('slopes', out['slope_log_median_vs_log_n'])


if __name__ == '__main__':
  main()
