"""Essential dynamics of grokking: each run's trajectory of log-softmax outputs
over its checkpoints (experiments/essential_dynamics.py's `trajectories`,
tinyjax.essential's PCA, cusps and extrema), against three milestones per
run: memorization_step and grokking_step (summary.json) and the Adam
slingshot (experiments/lenses_ii_grokking.py's `slingshot`: the first logged
step after 1,000 whose train loss exceeds 100x its minimum so far).

  python -m tinyjax.run --config configs/grokking_small.py:lenses2 --config.sweep.seeds=16 \
      --config.lenses.llc_parts="()" --config.lenses.every=100 --config.checkpoint.every=50 \
      --workdir runs/grok16 --noprogress
  python experiments/essential_dynamics_grokking.py --workdir runs/grok16

Two probes: the training rows (what the model memorises) and the test rows
(what it generalises to). Per run, probe and turn kind (the cusps of the
(PC1, PC2) curve; the extrema of PC1, PC2, PC3): the turn nearest each
milestone and its offset. Across runs: how many have one within one
checkpoint spacing, the median offset, Pearson r of the turn's step against
the milestone's across seeds, and the count expected by chance (per run, the
fraction of checkpoint steps that have a turn within one spacing, summed:
what a milestone placed at a random checkpoint would score). Writes
experiments/results/essential_dynamics_grokking.{json,png} (the training
probe's curves) and essential_dynamics_grokking_test.png.
"""

import argparse
import json
import os
import sys
import time

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
import essential_dynamics as ed  # noqa: E402
import lenses_ii_grokking as lg  # noqa: E402

from tinyjax import essential  # noqa: E402
from tinyjax import results  # noqa: E402

MILESTONES = ('memorization_step', 'slingshot_step', 'grokking_step')
TURNS = ('cusps', 'pc1', 'pc2', 'pc3')


def nearest(xs, v):
  return None if v is None or not xs else min(xs, key=lambda c: abs(c - v)) - v


def analyse(steps, f_RxTxF, names, ms, spacing):
  """Per run: PCA scores, turns, and each milestone's nearest turn."""
  per_run = []
  for name, f in zip(names, f_RxTxF):
    scores, _, explained = essential.trajectory_pca(f, 3)
    turns = {'cusps': [int(steps[i]) for i in essential.cusps(scores)],
             **{f'pc{k + 1}': [int(steps[i]) for i in essential.extrema(scores[:, k])]
                for k in range(3)}}
    # Chance: the fraction of checkpoint steps with a turn of this kind
    # within one spacing (a milestone at a random checkpoint).
    chance = {t: float(np.mean([any(abs(s - x) <= spacing for x in xs) for s in steps]))
              for t, xs in turns.items()}
    # Global landmarks: PCA of a smooth path gives PC curves shaped like
    # cos(k pi t / T) whatever happens (Antognini & Sohl-Dickstein 2018), so
    # PC2's minimum and PC3's maximum exist in every run, grokking or not:
    # the question is whether they move with the milestone from seed to seed.
    marks = {'pc2_argmin': int(steps[np.argmin(scores[:, 1])]),
             'pc3_argmax': int(steps[np.argmax(scores[:, 2])]),
             'pc1_steepest': int(steps[1:][np.argmax(np.abs(np.diff(scores[:, 0])))])}
    per_run.append({'run': name, **{m: ms[name][m] for m in MILESTONES},
                    'explained': explained.tolist(), 'turns': turns, 'chance': chance,
                    'landmarks': marks,
                    'landmark_minus_milestone': {
                        m: {k: None if ms[name][m] is None else v - ms[name][m]
                            for k, v in marks.items()} for m in MILESTONES},
                    'nearest_turn_minus_milestone': {
                        m: {t: nearest(xs, ms[name][m]) for t, xs in turns.items()}
                        for m in MILESTONES},
                    'scores': scores.tolist()})
  summary = {}
  for m in MILESTONES:
    summary[m] = {}
    for t in TURNS:
      with_m = [r for r in per_run if r[m] is not None]
      st = ed.turn_stats([r[m] for r in with_m],
                         [r['nearest_turn_minus_milestone'][m][t] for r in with_m], spacing)
      st['expected_within_window_by_chance'] = float(sum(r['chance'][t] for r in with_m))
      st['runs_not_within_window'] = [
          r['run'] for r in with_m if r['nearest_turn_minus_milestone'][m][t] is None
          or abs(r['nearest_turn_minus_milestone'][m][t]) > spacing]
      summary[m][t] = st
    for k in ('pc2_argmin', 'pc3_argmax', 'pc1_steepest'):
      with_m = [r for r in per_run if r[m] is not None]
      summary[m][k] = ed.turn_stats([r[m] for r in with_m],
                                    [r['landmark_minus_milestone'][m][k] for r in with_m], spacing)
  no_grok = [r for r in per_run if r['grokking_step'] is None]
  return per_run, {
      'landmarks_of_runs_that_never_grok': {r['run']: r['landmarks'] for r in no_grok},
      'landmarks_median_runs_that_grok': {k: float(np.median(
          [r['landmarks'][k] for r in per_run if r['grokking_step'] is not None]))
          for k in ('pc2_argmin', 'pc3_argmax', 'pc1_steepest')},
      'explained_pc1_median': float(np.median([r['explained'][0] for r in per_run])),
      'explained_pc123_median': float(np.median([sum(r['explained']) for r in per_run])),
      'cusps_per_run_median': float(np.median([len(r['turns']['cusps']) for r in per_run])),
      'features': int(f_RxTxF.shape[-1]), 'vs_milestones': summary}


def figure(steps, per_run, path, title):
  n = len(per_run)
  cols = 4
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), sharex=True)
  for ax, r in zip(np.ravel(axes), per_run):
    s = np.asarray(r['scores'])
    for k in range(3):
      ax.plot(steps, s[:, k] / max(np.abs(s[:, k]).max(), 1e-30), f'C{k}', lw=0.9,
              label=f'PC{k + 1} ({r["explained"][k]:.2f})')
    for c in r['turns']['cusps']:
      ax.plot(c, 1.08, 'kx', ms=5)
    for m, style in (('memorization_step', ('g', ':')), ('slingshot_step', ('r', '--')),
                     ('grokking_step', ('b', '-'))):
      if r[m] is not None:
        ax.axvline(r[m], color=style[0], ls=style[1], lw=0.9)
    ax.set_title(f'{r["run"]}: grok {r["grokking_step"]}, sling {r["slingshot_step"]}',
                 fontsize=8)
    ax.legend(fontsize=6, loc='lower left')
    ax.tick_params(labelsize=7)
  fig.suptitle(title + ' (each PC scaled to max |.| = 1; x: cusps of (PC1, PC2); green dotted: '
               'memorization_step, red dashed: slingshot, blue: grokking_step)', fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'grok16'))
  ap.add_argument('--name', default='grokking')
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  a = ap.parse_args()
  summary = json.load(open(os.path.join(a.workdir, 'summary.json')))
  metrics = results.run_rows(a.workdir)
  ms = {r['name']: {'memorization_step': r.get('memorization_step'),
                    'grokking_step': r.get('grokking_step'),
                    'slingshot_step': lg.slingshot(metrics[r['name']])} for r in summary['runs']}
  out = {'workdir': a.workdir, 'runs': len(ms), 'milestones': MILESTONES,
         'runs_with': {m: int(sum(v[m] is not None for v in ms.values())) for m in MILESTONES},
         'probes': {}}
  os.makedirs(a.out, exist_ok=True)
  for split in ('train', 'test'):
    t0 = time.time()
    steps, f_RxTxF, names = ed.trajectories(a.workdir, split)
    t_load = time.time() - t0
    steps = np.asarray(steps)
    spacing = int(np.median(np.diff(steps)))
    t0 = time.time()
    per_run, stats = analyse(steps, f_RxTxF, names, ms, spacing)
    out['steps'], out['checkpoint_spacing'] = steps.tolist(), spacing
    out['probes'][split] = {**stats, 'seconds_restore_and_forward': t_load,
                            'seconds_pca_all_runs': time.time() - t0, 'per_run': per_run}
    suffix = '' if split == 'train' else '_test'
    figure(steps, per_run, os.path.join(a.out, f'essential_dynamics_{a.name}{suffix}.png'),
           f'Essential dynamics of grokking, {split} rows as the probe')
    del f_RxTxF
  with open(os.path.join(a.out, f'essential_dynamics_{a.name}.json'), 'w') as fh:
    json.dump(out, fh, indent=1)
  brief = {split: {k: v for k, v in p.items() if k != 'per_run'}
           for split, p in out['probes'].items()}
  print(json.dumps(brief, indent=1))


if __name__ == '__main__':
  main()
