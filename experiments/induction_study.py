"""The induction phase change across seeds: does the head's formation coincide
with the loss bump and the drop of the in-context-learning score?

  python -m tinyjax.run --config configs/induction.py:sweep --workdir runs/induction
  python experiments/induction_study.py [--workdir runs/induction]

Reads the workdir (nothing is trained here) and writes
experiments/results/induction.{md,png}. Per seed:
  induction_step  the milestone: best layer-1 head's prefix-matching score on
                  the probe first > 0.4 (checked every step);
  bump_step       where the first copy's loss (`loss/first`, which only noise
                  can lower) peaks: the model starts predicting repeats that
                  are not there (logged every 10 steps, 5-row moving mean);
  icl_drop_step   where the probe's ICL score (loss on the repeat minus on the
                  first copy) falls fastest (5-row moving mean);
  bump            the peak's height above loss/first before the head formed.
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


def smooth(x, k=5):
  return np.convolve(x, np.ones(k) / k, mode='same')


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'induction'))
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  a = ap.parse_args()
  summary = json.load(open(os.path.join(a.workdir, 'summary.json')))
  ROWS = results.run_rows(a.workdir)  # noqa: N806
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  table, found, close = [], 0, 0
  for run in summary['runs']:
    rows = ROWS[run['name']]
    rows = [r for r in rows if r.get('loss/first') is not None]
    step = np.array([r['step'] for r in rows])
    first = np.array([r['loss/first'] for r in rows])
    repeat = np.array([r['loss/repeat'] for r in rows])
    ind = np.array([r['probe/induction_max/layer1'] for r in rows])
    picl = np.array([r['probe/icl'] for r in rows])
    t_star = run['induction_step']
    found += t_star is not None
    sf, sp = smooth(first), smooth(picl)
    inner = slice(2, len(step) - 2)  # the moving mean is biased at the ends
    bump_i = np.argmax(sf[inner]) + 2
    drop_i = np.argmin(np.diff(sp[inner])) + 2
    before = sf[(step >= 100) & (step < (t_star or step[-1]) - 100)]
    height = sf[bump_i] - (np.median(before) if len(before) else np.nan)
    table.append((run['name'], t_star, int(step[bump_i]), int(step[drop_i]), height,
                  run['final']['loss/repeat'], run['final']['loss/first']))
    if t_star is not None:
      close += abs(step[bump_i] - t_star) <= 100
      t = step - t_star
      axes[0].plot(t, first, lw=0.7)
      axes[1].plot(t, ind, lw=0.7)
      axes[2].plot(t, picl, lw=0.7)
  for ax, title in zip(axes, ('loss/first (the copy that cannot be predicted)',
                              'best layer-1 induction score (probe)',
                              'probe ICL score (repeat - first copy loss)')):
    ax.axvline(0, color='k', lw=0.6, ls='--')
    ax.set_xlim(-600, 900)
    ax.set_xlabel('step - induction_step')
    ax.set_title(title, fontsize=10)
  axes[1].axhline(0.4, color='grey', lw=0.6)
  fig.tight_layout()
  os.makedirs(a.out, exist_ok=True)
  fig.savefig(os.path.join(a.out, 'induction.png'), dpi=110)
  t_stars = [r[1] for r in table if r[1] is not None]
  lines = [f'`configs/induction.py:sweep`, {len(table)} seeds, devices {summary["devices"]}.', '',
           f'induction_step found in **{found} of {len(table)}** seeds '
           f'(median {np.median(t_stars):.0f}, range {min(t_stars)}-{max(t_stars)}); '
           f'loss/first peaks within 100 steps of it in **{close} of {found}**.', '',
           '| run | induction_step | bump_step | icl_drop_step | bump height | final loss/repeat '
           '| final loss/first |', '|---|---|---|---|---|---|---|']
  for name, t, b, d, h, lr, lf in table:
    lines.append(f'| {name} | {t} | {b} | {d} | {h:+.3f} | {lr:.3f} | {lf:.3f} |')
  with open(os.path.join(a.out, 'induction.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
