"""Essential dynamics (tinyjax.essential): PCA of each run's trajectory of
logits on a fixed probe over its checkpoints, the cusps where development
turns, and where they sit against the run's milestone.

  python -m tinyjax.run --config configs/timmy.py:lenses2 --workdir runs/timmy_lenses2
  python experiments/essential_dynamics.py --workdir runs/timmy_lenses2 [--milestone breakthrough_step]
  python -m tinyjax.run --config configs/induction.py:essential --workdir runs/induction_ed --noprogress
  python experiments/essential_dynamics.py --workdir runs/induction_ed --milestone induction_step \
      --also repeat_learned_step --split test --rows 16 --name induction

Reads the workdir (nothing is trained): every checkpoint of every run is
restored once, the model's log-softmax outputs on the training rows (every
scored position, flattened; log-softmax removes the logits' shift freedom)
are the features (--split test --rows K: the first K rows of the test split
instead, a fixed probe for tasks with many training rows), and per run: PCA over its checkpoints (3 components), the
cusps of the (PC1, PC2) curve (turning angle > 45 degrees, a local maximum)
and the extrema of each PC curve. Writes
experiments/results/essential_dynamics_<name>.{json,png}.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from flax import nnx  # noqa: E402

from tinyjax import checkpoint as ckpt_lib  # noqa: E402
from tinyjax import essential  # noqa: E402
from tinyjax import program as program_lib  # noqa: E402
from tinyjax import restore  # noqa: E402


def trajectories(workdir, split='train', rows=0):
  """(steps, features [R, T, F], run names) of the first group, on the first
  `rows` rows (0 = all) of `split`."""
  prog, group, _ = restore.open_run(workdir)
  hp_np = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
  target = ckpt_lib.numpy_target(prog.init, hp_np)
  mgr = ckpt_lib.manager(workdir, group.name, read_only=True)
  steps = sorted(mgr.all_steps())
  data = prog.data[split]
  n = rows or len(data['x_NxT'])
  x = jnp.asarray(data['x_NxT'][:n])
  mask = np.asarray(data['mask_NxT'][:n]) > 0

  @jax.jit
  def feats(params_R):
    def one(p):
      logits = nnx.merge(prog.graphdef, p)(x)[0]
      return jax.nn.log_softmax(logits, -1)
    return jax.vmap(one)(params_R)
  out = []
  for s in steps:
    _, state = ckpt_lib.restore_latest(mgr, target, s, move_unreadable=False)
    out.append(np.asarray(feats(state['params']))[:, mask].reshape(len(group.runs), -1))
  return steps, np.stack(out, 1), [r['name'] for r in group.runs]


def turn_stats(ms, gaps, window):
  """Across runs: how many have a turn within `window` steps of their
  milestone, the median offset, and whether the turn tracks the milestone
  from seed to seed (Pearson r of the turn's step against the milestone's)."""
  pairs = [(m, g) for m, g in zip(ms, gaps) if m is not None and g is not None]
  if not pairs:
    return {'runs': 0}
  m, g = np.array(pairs, float).T
  r = float(np.corrcoef(m, m + g)[0, 1]) if len(m) > 2 and np.std(m) > 0 and np.std(m + g) > 0 \
      else None
  return {'runs': len(m), 'within_window': int((np.abs(g) <= window).sum()), 'window': window,
          'offset_median': float(np.median(g)), 'offset_q25': float(np.percentile(g, 25)),
          'offset_q75': float(np.percentile(g, 75)), 'pearson_r_turn_vs_milestone': r}


OPS = {'>': np.greater, '>=': np.greater_equal, '<': np.less, '<=': np.less_equal}


def milestones_of(workdir):
  """summary.json's runs; for a run stopped before its end (no summary), the
  config's milestones read from each run's metrics.jsonl, at the logged
  resolution (the summary's are checked every step)."""
  path = os.path.join(workdir, 'summary.json')
  if os.path.exists(path):
    return json.load(open(path))
  ms = json.load(open(os.path.join(workdir, 'config.json')))['milestones']
  runs = []
  for n in sorted((n for n in os.listdir(workdir) if n.startswith('seed=')),
                  key=lambda n: int(n.split('=')[-1])):
    rows = [json.loads(l) for l in open(os.path.join(workdir, n, 'metrics.jsonl'))]
    run = {'name': n}
    for m, (metric, op, thr) in ms.items():
      run[m] = next((r['step'] for r in rows if r.get(metric) is not None
                     and OPS[op](r[metric], thr)), None)
    runs.append(run)
  print(f'{workdir}: no summary.json (a stopped run): milestones from metrics.jsonl, '
        'at the logged resolution')
  return {'runs': runs}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'timmy_lenses2'))
  ap.add_argument('--milestone', default='breakthrough_step')
  ap.add_argument('--also', default='', help='more milestones to mark, comma-separated')
  ap.add_argument('--split', default='train', help='the probe: this split of the task ...')
  ap.add_argument('--rows', type=int, default=0, help='... its first ROWS rows (0 = all)')
  ap.add_argument('--stride', type=int, default=0,
                  help='also find cusps on every STRIDE-th checkpoint (dense checkpoints turn '
                       'by small angles between neighbours)')
  ap.add_argument('--name', default='timmy')
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  a = ap.parse_args()
  summary = milestones_of(a.workdir)
  milestone = {r['name']: r.get(a.milestone) for r in summary['runs']}
  also = [m for m in a.also.split(',') if m]
  others = {r['name']: {m: r.get(m) for m in also} for r in summary['runs']}
  t0 = time.time()
  steps, f_RxTxF, names = trajectories(a.workdir, a.split, a.rows)
  t_load = time.time() - t0
  steps = np.asarray(steps)
  t0 = time.time()
  per_run = []
  for name, f in zip(names, f_RxTxF):
    scores, _, explained = essential.trajectory_pca(f, 3)
    cusp = [int(steps[i]) for i in essential.cusps(scores)]
    ext = {f'pc{k + 1}': [int(steps[i]) for i in essential.extrema(scores[:, k])] for k in range(3)}
    ms = milestone.get(name)
    near = min(cusp, key=lambda c: abs(c - ms)) if cusp and ms is not None else None
    def nearest(xs, v):
      return None if v is None or not xs else min(xs, key=lambda c: abs(c - v)) - v
    # The PC curves' turns (extrema) nearest each milestone, and the cusps of
    # the curve subsampled to every stride-th checkpoint.
    ext_near = {pc: nearest(xs, ms) for pc, xs in ext.items()}
    strided = ([int(steps[::a.stride][i]) for i in essential.cusps(scores[::a.stride])]
               if a.stride > 1 else None)
    # Global landmarks (robust to late minibatch wobble, unlike local turns):
    # PC2's minimum and maximum and PC1's steepest change between checkpoints.
    marks = {'pc2_argmin': int(steps[np.argmin(scores[:, 1])]) if scores.shape[1] > 1 else None,
             'pc2_argmax': int(steps[np.argmax(scores[:, 1])]) if scores.shape[1] > 1 else None,
             'pc1_steepest': int(steps[1:][np.argmax(np.abs(np.diff(scores[:, 0])))])}
    per_run.append({'run': name, 'milestone': ms, 'explained': explained.tolist(), 'cusps': cusp,
                    'landmarks': marks,
                    'landmarks_minus_milestone': {k: None if v is None or ms is None else v - ms
                                                  for k, v in marks.items()},
                    'extremum_nearest_milestone_minus_it': ext_near,
                    'cusps_strided': strided,
                    'nearest_strided_cusp_minus_milestone': nearest(strided or [], ms),
                    'extrema': ext, 'nearest_cusp': near,
                    'nearest_cusp_minus_milestone': None if near is None else near - ms,
                    'first_cusp_minus_milestone': cusp[0] - ms if cusp and ms is not None else None,
                    'also': {m: {'step': v, 'nearest_cusp_minus_it': nearest(cusp, v),
                                 'nearest_strided_cusp_minus_it': nearest(strided or [], v),
                                 'extremum_nearest_it_minus_it': {
                                     pc: nearest(xs, v) for pc, xs in ext.items()}}
                             for m, v in others.get(name, {}).items()},
                    'scores': scores.tolist()})
  t_pca = time.time() - t0
  gaps = np.array([r['nearest_cusp_minus_milestone'] for r in per_run
                   if r['nearest_cusp_minus_milestone'] is not None], float)
  spacing = int(np.median(np.diff(steps)))
  out = {'workdir': a.workdir, 'complete': os.path.exists(os.path.join(a.workdir, 'summary.json')),
         'milestone': a.milestone, 'steps': steps.tolist(),
         'features': int(f_RxTxF.shape[-1]), 'runs': len(names),
         'checkpoint_spacing': spacing,
         'explained_pc1_median': float(np.median([r['explained'][0] for r in per_run])),
         'explained_pc12_median': float(np.median([sum(r['explained'][:2]) for r in per_run])),
         'runs_with_milestone': int(sum(r['milestone'] is not None for r in per_run)),
         'runs_with_a_cusp_within_one_checkpoint': int((np.abs(gaps) <= spacing).sum()),
         'nearest_cusp_minus_milestone_median': float(np.median(gaps)) if len(gaps) else None,
         'first_cusp_minus_milestone': [r['first_cusp_minus_milestone'] for r in per_run],
         'first_cusp_minus_milestone_median': float(np.median(
             [r['first_cusp_minus_milestone'] for r in per_run
              if r['first_cusp_minus_milestone'] is not None])),
         'cusps_per_run_median': float(np.median([len(r['cusps']) for r in per_run])),
         'probe': {'split': a.split, 'rows': a.rows or 'all'},
         'extrema_vs_milestone': {pc: turn_stats(
             [r['milestone'] for r in per_run],
             [r['extremum_nearest_milestone_minus_it'][pc] for r in per_run], spacing)
             for pc in ('pc1', 'pc2', 'pc3')},
         'landmarks_vs_milestone': {k: turn_stats(
             [r['milestone'] for r in per_run],
             [r['landmarks_minus_milestone'][k] for r in per_run], spacing)
             for k in ('pc2_argmin', 'pc2_argmax', 'pc1_steepest')},
         'landmarks_vs_also': {m: {k: turn_stats(
             [r['also'][m]['step'] for r in per_run],
             [None if r['also'][m]['step'] is None or r['landmarks'][k] is None
              else r['landmarks'][k] - r['also'][m]['step'] for r in per_run], spacing)
             for k in ('pc2_argmin', 'pc2_argmax', 'pc1_steepest')} for m in also},
         'stride': a.stride,
         'strided_cusps_vs_milestone': turn_stats(
             [r['milestone'] for r in per_run],
             [r['nearest_strided_cusp_minus_milestone'] for r in per_run],
             spacing * a.stride) if a.stride > 1 else None,
         'also_extrema': {m: {pc: turn_stats(
             [r['also'][m]['step'] for r in per_run],
             [r['also'][m]['extremum_nearest_it_minus_it'][pc] for r in per_run], spacing)
             for pc in ('pc1', 'pc2', 'pc3')} for m in also},
         'also': {m: {
             'runs_with_it': int(sum(r['also'][m]['step'] is not None for r in per_run)),
             'runs_with_a_cusp_within_one_checkpoint': int(sum(
                 r['also'][m]['nearest_cusp_minus_it'] is not None
                 and abs(r['also'][m]['nearest_cusp_minus_it']) <= spacing for r in per_run)),
             'nearest_cusp_minus_it_median': float(np.median(
                 [r['also'][m]['nearest_cusp_minus_it'] for r in per_run
                  if r['also'][m]['nearest_cusp_minus_it'] is not None]))
             if any(r['also'][m]['nearest_cusp_minus_it'] is not None for r in per_run) else None}
             for m in also},
         'seconds_restore_and_forward': t_load, 'seconds_pca_all_runs': t_pca,
         'per_run': per_run}
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, f'essential_dynamics_{a.name}.json'), 'w') as fh:
    json.dump(out, fh, indent=1)
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
  for k, r in enumerate(per_run):
    s = np.asarray(r['scores'])
    c = f'C{k % 10}'
    if k < 6:
      axes[0].plot(s[:, 0], s[:, 1], c, lw=0.8, marker='.', ms=3)
      for cs in r['cusps']:
        i = int(np.searchsorted(steps, cs))
        axes[0].plot(s[i, 0], s[i, 1], 'x', color=c, ms=7)
      if r['milestone'] is not None:
        i = int(np.argmin(np.abs(steps - r['milestone'])))
        axes[0].plot(s[i, 0], s[i, 1], 'o', mfc='none', color=c, ms=9)
      for m, v in r['also'].items():
        if v['step'] is not None:
          i = int(np.argmin(np.abs(steps - v['step'])))
          axes[0].plot(s[i, 0], s[i, 1], 's', mfc='none', color=c, ms=9)
    if r['milestone'] is not None:
      for j, ax in ((0, axes[1]), (1, axes[2])):
        ax.plot(steps - r['milestone'], s[:, j] / max(np.abs(s[:, j]).max(), 1e-30), c,
                lw=0.6, alpha=0.7)
        for m, v in r['also'].items():
          if v['step'] is not None:
            ax.axvline(v['step'] - r['milestone'], color=c, lw=0.4, ls=':')
  axes[0].set_title('PC1 vs PC2, first 6 runs (x: cusps, o: checkpoint nearest the milestone'
                    + (f', square: {", ".join(also)}' if also else '') + ')', fontsize=9)
  for j, ax in ((1, axes[1]), (2, axes[2])):
    ax.axvline(0, color='k', lw=0.6, ls='--')
    ax.set_xlabel(f'step - {a.milestone}')
    ax.set_title(f'PC{j} (scaled to max |.| = 1), every run'
                 + (f'; dotted: {", ".join(also)}' if also else ''), fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(a.out, f'essential_dynamics_{a.name}.png'), dpi=100)
  print(json.dumps({k: v for k, v in out.items() if k != 'per_run'}, indent=1))


if __name__ == '__main__':
  main()
