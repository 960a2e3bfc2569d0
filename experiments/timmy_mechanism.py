"""What changes at Timmy's breakthrough: where the heads attend, or what they
write? 64 seeds at the recorded setup, every cheap lens, aligned at each
seed's breakthrough_step t* (loss/content < 0.8).

  python -m tinyjax.run --config configs/timmy.py --config.sweep.seeds=64 \
      --config.checkpoint.log_spaced=False --config.lenses.every=0 \
      --workdir runs/timmy64 --noprogress

(--config.lenses.every=0: every cheap lens in every logged step, 10 steps
apart; the config's default is every 50 steps and log-spaced, too coarse for
the 10/50/90% crossings below.)
  python experiments/timmy_mechanism.py [--workdir runs/timmy64]

For every lens (per layer and head: normalized attention entropy, mass on
position 0 (where the colour is), previous-token score on the probe, OV copy
score; per module: relative distance from init), per seed: its value on the
plateau (median over t* - 1000 .. t* - 200), after (median over t* + 500 ..
t* + 1000), and the steps (relative to t*) at which it has made 10%, 50% and
90% of that change (first crossing; the head with the largest change of the
layer). Medians over seeds in experiments/results/timmy_mechanism.md, the
aligned curves in timmy_mechanism.png.

The observation under test (from one run in TensorBoard): per-head
attention entropy sits near its maximum on the plateau and drops only
slightly after the breakthrough.
"""

import argparse
import json
import os
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tinyjax import results  # noqa: E402
LENSES = (('attention_entropy_norm', 'normalized entropy'), ('attention_first', 'mass on position 0'),
          ('probe/prev_token', 'previous-token score'), ('copying', 'OV copy score'))


def series(rows, key):
  return np.array([r.get(key) if r.get(key) is not None else np.nan for r in rows], float)


def crossings(t, x, before, after):
  """Steps (relative) at which x first makes 10/50/90% of before -> after."""
  out = []
  for q in (0.1, 0.5, 0.9):
    level = before + q * (after - before)
    hit = (x - level) * np.sign(after - before) >= 0
    i = np.argmax(hit & (t >= -1000))
    out.append(t[i] if hit[i] else np.nan)
  return out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'timmy64'))
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  a = ap.parse_args()
  summary = json.load(open(os.path.join(a.workdir, 'summary.json')))
  ROWS = results.run_rows(a.workdir)  # noqa: N806
  runs = [r for r in summary['runs'] if r['breakthrough_step'] is not None]
  stats = {}   # lens label -> list of (before, after, c10, c50, c90) per seed
  curves = {}  # lens label -> list of (t, x)
  entropy_heads = []  # per seed, per head: (plateau, after) normalized entropy
  for run in runs:
    rows = ROWS[run['name']]
    rows = [r for r in rows if r.get('loss/content') is not None]
    t = np.array([r['step'] for r in rows]) - run['breakthrough_step']
    plateau, post = (t >= -1000) & (t <= -200), (t >= 500) & (t <= 1000)
    if not plateau.any() or not post.any():
      continue
    keys = sorted(k for k in rows[0] if k.startswith(('attention_entropy_norm/', 'attention_first/',
                                                      'probe/prev_token/', 'copying/',
                                                      'dist_init_rel/')))
    heads = [k for k in keys if k.startswith('attention_entropy_norm/')]
    entropy_heads.append([(np.median(series(rows, k)[plateau]), np.median(series(rows, k)[post]))
                          for k in heads])
    groups = {}
    for k in keys:
      base, _, where = k.partition('/layer') if '/layer' in k else k.rpartition('/')
      label = (f'{base} layer {where.split("/")[0]}' if '/layer' in k else k)
      groups.setdefault(label, []).append(k)
    groups['loss/content'] = ['loss/content']
    for label, ks in groups.items():
      best = max(ks, key=lambda k: abs(np.median(series(rows, k)[post])
                                        - np.median(series(rows, k)[plateau])))
      x = series(rows, best)
      before, after = np.median(x[plateau]), np.median(x[post])
      stats.setdefault(label, []).append((before, after, *crossings(t, x, before, after)))
      curves.setdefault(label, []).append((t, x))
  lines = [f'`configs/timmy.py`, {len(summary["runs"])} seeds at lr 0.1; '
           f'{len(runs)} broke through; {len(entropy_heads)} have 1,000 steps of plateau and after.',
           '', '| lens (head with the largest change) | plateau | after | change | 10% at | 50% at | '
           '90% at |', '|---|---|---|---|---|---|---|']
  for label in sorted(stats):
    s = np.array(stats[label], float)
    med = np.nanmedian(s, 0)
    lines.append(f'| {label} | {med[0]:.3f} | {med[1]:.3f} | {med[1] - med[0]:+.3f} | '
                 f'{med[2]:+.0f} | {med[3]:+.0f} | {med[4]:+.0f} |')
  e = np.array(entropy_heads)  # seeds x heads x (plateau, after)
  lines += ['', 'Steps are relative to t* = breakthrough_step (medians over seeds).', '',
            'Normalized attention entropy per head (1 = uniform over the keys it may see), '
            'medians over seeds [min, max]:', '',
            '| head | plateau | after | drop |', '|---|---|---|---|']
  for h in range(e.shape[1]):
    lines.append(f'| {h} | {np.median(e[:, h, 0]):.3f} [{e[:, h, 0].min():.3f}, '
                 f'{e[:, h, 0].max():.3f}] | {np.median(e[:, h, 1]):.3f} '
                 f'[{e[:, h, 1].min():.3f}, {e[:, h, 1].max():.3f}] | '
                 f'{np.median(e[:, h, 0] - e[:, h, 1]):.3f} |')
  show = ['loss/content'] + [l for l in sorted(curves) if l != 'loss/content'
                             and not l.startswith('dist_init')][:8]
  fig, axes = plt.subplots(3, 3, figsize=(15, 11))
  grid = np.arange(-1500, 1501, 10)
  for ax, label in zip(axes.ravel(), show):
    ys = np.array([np.interp(grid, t, x, left=np.nan, right=np.nan) for t, x in curves[label]])
    ax.plot(grid, np.nanmedian(ys, 0), 'k', lw=1)
    ax.fill_between(grid, np.nanpercentile(ys, 25, 0), np.nanpercentile(ys, 75, 0), alpha=0.3)
    ax.axvline(0, color='r', lw=0.6, ls='--')
    ax.set_title(label + ' (median, IQR)', fontsize=9)
    ax.set_xlabel('step - breakthrough_step', fontsize=8)
  fig.tight_layout()
  os.makedirs(a.out, exist_ok=True)
  fig.savefig(os.path.join(a.out, 'timmy_mechanism.png'), dpi=100)
  with open(os.path.join(a.out, 'timmy_mechanism.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
