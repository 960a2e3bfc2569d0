"""Timmy's breakthrough through the restricted LLC (per layer, per head, per
layer's OV and QK pair) and the sharpness against 2/lr.

  python -m tinyjax.run --config configs/timmy.py:lenses2 --workdir runs/timmy_lenses2 --noprogress
  python experiments/lenses_ii_timmy.py --workdir runs/timmy_lenses2

Reads the workdir (nothing is trained): per run the checkpoint lenses
(lenses.jsonl / the group's columnar lenses files) and breakthrough_step t*
(summary.json). Per part and per seed: the LLC at the last checkpoint at or
before t* - 250 ("before") and at the first at or after t* + 250 ("after"),
so that the two checkpoints bracket the breakthrough on the plateau and past
it; medians over seeds, and the fraction of seeds in which the part's LLC
rose. Sharpness: the top Hessian eigenvalue (Lanczos, hessian/top1; power
iteration, sharpness) against 2/lr = 20 along training, the maximum over the
checkpoints before and after t*. Writes experiments/results/lenses_ii_timmy.{json,png}.
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


def col(rows, k):
  return np.array([r.get(k) if r.get(k) is not None else np.nan for r in rows], float)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'timmy_lenses2'))
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  ap.add_argument('--margin', type=int, default=250)
  ap.add_argument('--name', default='lenses_ii_timmy', help='Output files NAME.{json,png}.')
  a = ap.parse_args()
  summary = json.load(open(os.path.join(a.workdir, 'summary.json')))
  lens = results.run_rows(a.workdir, 'lenses')
  runs = summary['runs']
  lr = runs[0]['hparams']['lr']
  parts = sorted({k[len('llc_part/'):] for r in lens[runs[0]['name']] for k in r
                  if k.startswith('llc_part/')})
  names = ['(whole model)'] + parts
  keys = ['llc'] + [f'llc_part/{p}' for p in parts]
  before, after, curves = {n: [] for n in names}, {n: [] for n in names}, {n: [] for n in names}
  sharp = []
  n_broke = 0
  for run in runs:
    rows = lens[run['name']]
    steps = np.array([r['step'] for r in rows])
    t = run.get('breakthrough_step')
    top1, power = col(rows, 'hessian/top1'), col(rows, 'sharpness')
    sharp.append({'run': run['name'], 'breakthrough_step': t, 'steps': steps.tolist(),
                  'top1': top1.tolist(), 'power': power.tolist(),
                  'max_top1_before': float(np.nanmax(top1[steps <= t])) if t else None,
                  'max_top1_after': float(np.nanmax(top1[steps > t])) if t else None,
                  'max_top1': float(np.nanmax(top1)),
                  'top1_last_before': float(top1[steps <= t][-1]) if t else None,
                  'top1_first_after': float(top1[steps > t][0]) if t else None,
                  'top1_end': float(top1[-1])})
    if t is None:
      continue
    i_b = np.where(steps <= t - a.margin)[0]
    i_a = np.where(steps >= t + a.margin)[0]
    if not len(i_b) or not len(i_a):
      continue
    n_broke += 1
    for n, k in zip(names, keys):
      v = col(rows, k)
      before[n].append(v[i_b[-1]])
      after[n].append(v[i_a[0]])
      curves[n].append((steps - t, v))
  table = []
  for n in names:
    b, af = np.array(before[n]), np.array(after[n])
    table.append({'part': n, 'before_median': float(np.median(b)), 'after_median': float(np.median(af)),
                  'change_median': float(np.median(af - b)),
                  'change_q25': float(np.percentile(af - b, 25)),
                  'change_q75': float(np.percentile(af - b, 75)),
                  'fraction_rose': float(np.mean(af > b))})
  # The spectrum beyond the top eigenvalue (Lanczos top-k, Hutchinson trace,
  # SLQ's negative mass) at the plateau's step 2000 and around t*.
  spectrum = {}
  for k in ('hessian/top1', 'hessian/top2', 'hessian/top3', 'hessian/trace',
            'hessian/negative_mass'):
    at = {'step_2000': [], 'last_before': [], 'first_after': [], 'end': []}
    for run in runs:
      rows, t = lens[run['name']], run.get('breakthrough_step')
      steps, v = np.array([r['step'] for r in rows]), col(lens[run['name']], k)
      if np.isnan(v).all():
        continue
      at['step_2000'] += list(v[steps == 2000])
      at['end'].append(v[-1])
      if t:
        at['last_before'].append(v[steps <= t][-1])
        at['first_after'].append(v[steps > t][0])
    if at['end']:
      spectrum[k] = {w: float(np.median(x)) for w, x in at.items() if x}
  # Per seed: did the OV pair's LLC rise more than the QK pair's of the same layer?
  for layer in (0, 1):
    ov, qk = f'ov{layer}', f'qk{layer}'
    if ov in before and qk in before and before[ov]:
      d_ov = np.array(after[ov]) - np.array(before[ov])
      d_qk = np.array(after[qk]) - np.array(before[qk])
      table.append({'part': f'seeds where {ov} rose more than {qk}',
                    'fraction': float(np.mean(d_ov > d_qk))})
  thr = 2 / lr
  out = {'workdir': a.workdir, 'seeds': len(runs), 'seeds_bracketed': n_broke, 'lr': lr,
         'gd_threshold_2_over_lr': thr, 'margin': a.margin, 'table': table,
         'sharpness_max_over_runs': float(np.nanmax([s['max_top1'] for s in sharp])),
         'sharpness_median_max_before_breakthrough': float(np.nanmedian(
             [s['max_top1_before'] for s in sharp if s['max_top1_before'] is not None])),
         'sharpness_median_max_after_breakthrough': float(np.nanmedian(
             [s['max_top1_after'] for s in sharp if s['max_top1_after'] is not None])),
         'top1_median_last_checkpoint_before_breakthrough': float(np.nanmedian(
             [s['top1_last_before'] for s in sharp if s['top1_last_before'] is not None])),
         'top1_median_first_checkpoint_after_breakthrough': float(np.nanmedian(
             [s['top1_first_after'] for s in sharp if s['top1_first_after'] is not None])),
         'top1_median_at_end': float(np.nanmedian([s['top1_end'] for s in sharp])),
         'top1_plateau_median_at_step_2000': float(np.nanmedian(
             [s['top1'][s['steps'].index(2000)] for s in sharp if 2000 in s['steps']])),
         'runs_above_threshold_at_any_checkpoint': int(sum(s['max_top1'] > thr for s in sharp)),
         'power_vs_lanczos_max_rel_diff': float(np.nanmax([np.nanmax(np.abs(
             np.array(s['power']) - np.array(s['top1'])) / np.maximum(np.abs(s['top1']), 1e-9))
             for s in sharp])),
         'spectrum_medians': spectrum,
         'sharpness': sharp}
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, a.name + '.json'), 'w') as fh:
    json.dump(out, fh, indent=1)

  fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
  grid = np.arange(-2000, 2001, 250)
  for k, n in enumerate(names):
    if not curves[n]:
      continue
    m = np.array([np.interp(grid, t, v, left=np.nan, right=np.nan) for t, v in curves[n]])
    ax = axes[0] if (n == '(whole model)' or n.startswith(('layer0', 'layer1')) and
                     '/head' not in n) else axes[1]
    ax.plot(grid, np.nanmedian(m, 0), lw=1.2, marker='.', label=n, color=f'C{k % 10}')
  for ax, title in ((axes[0], 'LLC: whole model, per layer (median over seeds)'),
                    (axes[1], 'restricted LLC per head and OV / QK pair (median)')):
    ax.axvline(0, color='k', lw=0.6, ls='--')
    ax.set_xlabel('step - breakthrough_step')
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
  for k, s in enumerate(sharp):
    axes[2].plot(s['steps'], s['top1'], lw=0.6, color=f'C{k % 10}')
    if s['breakthrough_step']:
      axes[2].axvline(s['breakthrough_step'], lw=0.4, color=f'C{k % 10}', ls=':')
  axes[2].axhline(thr, color='k', ls='--', lw=0.8, label=f'2/lr = {thr:g}')
  axes[2].set_yscale('log')
  axes[2].set_title('top Hessian eigenvalue (Lanczos) per seed; dotted: breakthrough', fontsize=10)
  axes[2].set_xlabel('step')
  axes[2].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(a.out, a.name + '.png'), dpi=100)
  print(json.dumps({k: v for k, v in out.items() if k != 'sharpness'}, indent=1))


if __name__ == '__main__':
  main()
