"""Grokking (configs/grokking_small.py, AdamW) against Adam's edge of
stability: the preconditioned sharpness lambda_max(P^-1 H) (P from the run's
Adam second moment) beside 38/lr (Cohen et al. 2022, b1 = 0.9), the plain top
eigenvalue beside 2/lr, and, when the run measured it, the restricted LLC of
each module.

  python -m tinyjax.run --config configs/grokking_small.py:lenses2 --workdir runs/grok_lenses2 --noprogress
  python experiments/lenses_ii_grokking.py --workdir runs/grok_lenses2
  # a run trained without the restricted LLC: measured afterwards on its checkpoints
  python -m tinyjax.lens --workdir runs/grok16 --out runs/grok16_llc_parts \
      --config.lenses.llc_parts=modules --config.lenses.sharpness_precond=0
  python experiments/lenses_ii_grokking.py --workdir runs/grok16 --llc_dir runs/grok16_llc_parts \
      --name lenses_ii_grokking_llc_parts

Reads the workdir (nothing is trained). The slingshot step of a run: the
first logged step after step 1,000 at which the train loss exceeds 100x its
minimum so far (the README's grokking study saw it at ~1,400-1,600: train
loss from ~1e-8 back to ~1e-1). Per run: the first checkpoint at which
sharpness_precond >= 38/lr (its `eos` ratio >= 1), the ratio at the
checkpoints before and after the slingshot, and whether the crossing comes
first. The restricted LLC per module (when measured), per seed at four
checkpoints: the first after memorization_step (the memorised solution), the
last before grokking_step and the first at or after it (the circuit forming,
test accuracy crossing 0.95), the last before and the first at or after the
slingshot, and the last; medians and IQR over seeds and the number of seeds in
which each module's LLC fell or rose across each transition
(`llc_parts_by_phase`). Writes experiments/results/lenses_ii_grokking.{json,png}.
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


def slingshot(rows, after=1000, factor=100.0):
  rows = [r for r in rows if r.get('loss') is not None]
  best = np.inf
  for r in rows:
    if r['step'] > after and r['loss'] > factor * best:
      return r['step']
    best = min(best, r['loss'])
  return None


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'grok_lenses2'))
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  ap.add_argument('--name', default='lenses_ii_grokking', help='basename of the .json and .png')
  ap.add_argument('--llc_dir', default='',
                  help='the restricted LLC from this folder instead: the output of '
                       'python -m tinyjax.lens --workdir WORKDIR --out DIR '
                       '--config.lenses.llc_parts=modules (on the finished run\'s checkpoints)')
  ap.add_argument('--chains_dir', default='',
                  help='a second tinyjax.lens output with more llc_chains at a few of the same '
                       'checkpoints: the chain-to-chain spread against the one-chain values')
  a = ap.parse_args()
  path = os.path.join(a.workdir, 'summary.json')
  if os.path.exists(path):
    lens, metrics = results.run_rows(a.workdir, 'lenses'), results.run_rows(a.workdir)
    runs = json.load(open(path))['runs']
  else:  # a run still going (or stopped): the per-run files and milestones written so far
    read = lambda n, kind: [json.loads(l) for l in open(os.path.join(a.workdir, n, f'{kind}.jsonl'))]
    names = sorted((n for n in os.listdir(a.workdir) if n.startswith('seed=')),
                   key=lambda n: int(n.split('=')[-1]))
    lens = {n: read(n, 'lenses') for n in names}
    metrics = {n: read(n, 'metrics') for n in names}
    lr = json.load(open(os.path.join(a.workdir, 'config.json')))['optimizer']['lr']
    first = lambda rows, k, v: next((r['step'] for r in rows if (r.get(k) or 0) >= v), None)
    runs = [{'name': n, 'hparams': {'lr': lr},
             'memorization_step': first(metrics[n], 'accuracy', 0.99),
             'grokking_step': first(metrics[n], 'test/accuracy', 0.95)}
            for n in sorted(lens, key=lambda n: int(n.split('=')[-1]))]
  # The restricted LLC's rows: the run's own, or those tinyjax.lens wrote
  # afterwards on its checkpoints (--llc_dir: OUT has the workdir's summary.json).
  llc_rows = results.run_rows(a.llc_dir, 'lenses') if a.llc_dir else lens
  per_run = []
  fig, axes = plt.subplots(3, 2, figsize=(14, 13))
  axes = axes.ravel()
  parts = sorted({k[len('llc_part/'):] for r in llc_rows[runs[0]['name']] for k in r
                  if k.startswith('llc_part/') and r[k] is not None})
  for k, run in enumerate(runs):
    rows, mrows = lens[run['name']], metrics[run['name']]
    steps = np.array([r['step'] for r in rows])
    ratio, sp = col(rows, 'sharpness_precond_eos'), col(rows, 'sharpness_precond')
    thr, top1 = col(rows, 'sharpness_precond_threshold'), col(rows, 'hessian/top1')
    lr = run['hparams']['lr']
    sling = slingshot(mrows)
    cross = steps[np.where(ratio >= 1)[0]]
    first_cross = int(cross[0]) if len(cross) else None
    before = steps <= sling if sling else np.zeros(len(steps), bool)
    # After step 1,000 (past the first checkpoints' transient): where the ratio
    # peaks and whether it crosses 1 within one checkpoint of the slingshot.
    dt = int(np.median(np.diff(steps))) if len(steps) > 1 else 100
    late = steps > 1000
    late_cross = [int(c) for c in cross if c > 1000]
    peak = int(steps[late][np.nanargmax(ratio[late])]) if late.any() else None
    entry = {'run': run['name'], 'memorization_step': run.get('memorization_step'),
             'grokking_step': run.get('grokking_step'), 'slingshot_step': sling,
             'first_checkpoint_precond_ge_38_over_lr': first_cross,
             'crossings': [int(c) for c in cross],
             'late_crossings': late_cross,
             'late_crossing_within_one_checkpoint_of_slingshot': bool(sling) and any(
                 abs(c - sling) <= dt for c in late_cross),
             'late_ratio_peak_step_minus_slingshot': None if peak is None or not sling else peak - sling,
             'late_ratio_max': float(np.nanmax(ratio[late])) if late.any() else None,
             'ratio_max': float(np.nanmax(ratio)),
             'ratio_at_last_checkpoint_before_slingshot':
                 float(ratio[before][-1]) if before.any() else None,
             'ratio_at_first_checkpoint_after_slingshot':
                 float(ratio[~before][0]) if sling and (~before).any() else None,
             'plain_top1_max_times_lr_over_2': float(np.nanmax(top1) * lr / 2),
             'steps': steps.tolist(), 'ratio': ratio.tolist(), 'sharpness_precond': sp.tolist(),
             'threshold': thr.tolist(), 'top1': top1.tolist(),
             'llc_steps': [r['step'] for r in llc_rows[run['name']]],
             'llc_parts': {p: col(llc_rows[run['name']], f'llc_part/{p}').tolist() for p in parts},
             # The SGLD's health: the fraction of draws whose loss is below the
             # loss at w* (near 0 at a local minimum; high: w* is not one).
             'llc_parts_below': {p: col(llc_rows[run['name']], f'llc_part_below/{p}').tolist()
                                 for p in parts}}
    per_run.append(entry)
    c = f'C{k % 10}'
    axes[0].plot(steps, ratio, c, lw=0.7, marker='.', ms=2)
    lr_steps = [r['step'] for r in mrows if r.get('loss') is not None]
    axes[1].plot(lr_steps, [r['loss'] for r in mrows if r.get('loss') is not None], c, lw=0.6)
    for ax in axes[:2]:
      if sling:
        ax.axvline(sling, color=c, lw=0.5, ls=':')
  axes[0].axhline(1.0, color='k', ls='--', lw=0.8)
  axes[0].set_yscale('log')
  axes[0].set_title('lambda_max(P^-1 H) / (38 / lr) per seed; dotted: slingshot', fontsize=10)
  axes[1].set_yscale('log')
  axes[1].set_title('train loss per seed; dotted: slingshot step', fontsize=10)
  if parts:
    grid_steps = np.array(per_run[0]['llc_steps'])
    for j, p in enumerate(parts):
      m = np.array([r['llc_parts'][p] for r in per_run])
      axes[2].plot(grid_steps, np.nanmedian(m, 0), f'C{j}', lw=1.2, marker='.', label=p)
      axes[2].fill_between(grid_steps, np.nanpercentile(m, 25, 0), np.nanpercentile(m, 75, 0),
                           color=f'C{j}', alpha=0.15, lw=0)
      # Aligned on each seed's grokking_step, then its slingshot (offsets
      # rounded to the checkpoint spacing): median and IQR of the seeds with it.
      dt = int(np.median(np.diff(grid_steps))) if len(grid_steps) > 1 else 100
      for ax, milestone in ((axes[3], 'grokking_step'), (axes[4], 'slingshot_step')):
        off = {}
        with_it = [r for r in per_run if r[milestone] is not None]
        for r in with_it:
          for st, v in zip(r['llc_steps'], r['llc_parts'][p]):
            off.setdefault(int(round((st - r[milestone]) / dt)) * dt, []).append(v)
        ks = sorted(k for k in off if len(off[k]) >= max(len(with_it) // 2, 1))
        ax.plot(ks, [np.median(off[k]) for k in ks], f'C{j}', lw=1.2, marker='.', label=p)
        ax.fill_between(ks, [np.percentile(off[k], 25) for k in ks],
                        [np.percentile(off[k], 75) for k in ks], color=f'C{j}', alpha=0.15, lw=0)
    mem = [r['memorization_step'] for r in per_run if r['memorization_step']]
    grok = [r['grokking_step'] for r in per_run if r['grokking_step']]
    if mem:
      axes[2].axvline(np.median(mem), color='k', lw=0.6, ls=':')
    if grok:
      axes[2].axvspan(min(grok), max(grok), color='0.85', zorder=0)
    allv = np.array([v for r in per_run for p in parts for v in r['llc_parts'][p]], float)
    if np.nanmin(allv) > 0:  # modules differ by orders of magnitude; log only if all positive
      for ax in axes[2:5]:
        ax.set_yscale('log')
    axes[2].legend(fontsize=8)
    axes[2].set_title('restricted LLC per module: median, IQR over seeds\n'
                      '(dotted: median memorization_step; grey: grokking_step range)', fontsize=10)
    for ax, milestone in ((axes[3], 'grokking_step'), (axes[4], 'slingshot_step')):
      ax.axvline(0, color='k', lw=0.6, ls='--')
      ax.set_xlabel(f'step - {milestone}')
      ax.set_title(f'restricted LLC per module aligned on {milestone}: median, IQR over the '
                   'seeds with it\n(offsets with at least half of them)', fontsize=10)
  else:
    axes[2].set_title('(restricted LLC not measured in this run)', fontsize=10)
  for ax in axes[:3]:
    ax.set_xlabel('step')
  if parts:
    for j, p in enumerate(parts):
      b = np.array([r['llc_parts_below'][p] for r in per_run])
      axes[5].plot(grid_steps, np.nanmedian(b, 0), f'C{j}', lw=1.2, marker='.', label=p)
    axes[5].set_title('fraction of SGLD draws below the loss at w*, median over seeds',
                      fontsize=10)
    axes[5].set_xlabel('step')
  else:
    axes[5].axis('off')
  fig.tight_layout()
  os.makedirs(a.out, exist_ok=True)
  fig.savefig(os.path.join(a.out, a.name + '.png'), dpi=100)
  llc_phases = {}
  if parts:
    # Per module and seed, the LLC at: the first checkpoint after
    # memorization_step; the last before and the first at or after
    # grokking_step (the runs that grok); the last before and the first
    # after the slingshot; the last checkpoint. Then medians (IQR) over seeds
    # and how many seeds fell or rose across each transition.
    def first(r, cond):
      i = [j for j, st in enumerate(r['llc_steps']) if cond(st)]
      return (i[0], i[-1]) if i else (None, None)
    pairs = {'memorization_to_end': ('after_memorization', 'end'),
             'across_grokking': ('before_grokking', 'at_grokking'),
             'across_slingshot': ('before_slingshot', 'after_slingshot'),
             'memorization_to_before_grokking': ('after_memorization', 'before_grokking')}
    for p in parts:
      by_run = {}
      for r in per_run:
        v, m, g, sl = (r['llc_parts'][p], r['memorization_step'], r['grokking_step'],
                       r['slingshot_step'])
        at = {}
        if m is not None and first(r, lambda st: st > m)[0] is not None:
          at['after_memorization'] = v[first(r, lambda st: st > m)[0]]
        if g is not None and first(r, lambda st: st < g)[1] is not None \
            and first(r, lambda st: st >= g)[0] is not None:
          at['before_grokking'] = v[first(r, lambda st: st < g)[1]]
          at['at_grokking'] = v[first(r, lambda st: st >= g)[0]]
        if sl is not None and first(r, lambda st: st < sl)[1] is not None \
            and first(r, lambda st: st >= sl)[0] is not None:
          at['before_slingshot'] = v[first(r, lambda st: st < sl)[1]]
          at['after_slingshot'] = v[first(r, lambda st: st >= sl)[0]]
        at['end'] = v[-1]
        by_run[r['run']] = at
      entry = {}
      for k in ('after_memorization', 'before_grokking', 'at_grokking', 'before_slingshot',
                'after_slingshot', 'end'):
        x = np.array([at[k] for at in by_run.values() if k in at], float)
        entry[k] = {'runs': len(x), **({'median': float(np.median(x)),
                                        'q25': float(np.percentile(x, 25)),
                                        'q75': float(np.percentile(x, 75))} if len(x) else {})}
      for name, (k0, k1) in pairs.items():
        d = np.array([at[k1] - at[k0] for at in by_run.values() if k0 in at and k1 in at], float)
        entry[name] = {'runs': len(d), 'fell': int((d < 0).sum()), 'rose': int((d > 0).sum()),
                       'change_median': float(np.median(d)) if len(d) else None}
      # Does the fall track grokking from seed to seed? The first checkpoint
      # after memorisation at which the LLC is below a fraction of its value
      # there, against grokking_step (Pearson r over the seeds that grok);
      # and, as a baseline for "fell across grokking", the fraction of all
      # 50-step checkpoint pairs between memorisation and grokking that fell.
      for frac in (0.2, 0.1):
        drop = {}
        for r in per_run:
          v, steps_r, m = np.array(r['llc_parts'][p], float), r['llc_steps'], r['memorization_step']
          i0 = first(r, lambda st: st > m)[0] if m is not None else None
          if i0 is None:
            continue
          below = [steps_r[i] for i in range(i0, len(v)) if v[i] < frac * v[i0]]
          drop[r['run']] = below[0] if below else None
        g = [(drop[r['run']], r['grokking_step']) for r in per_run
             if r['grokking_step'] is not None and drop.get(r['run']) is not None]
        x = np.array(g, float)
        entry[f'first_below_{frac}_of_memorized'] = {
            'runs': len(g), 'steps': drop,
            'minus_grokking_median': float(np.median(x[:, 0] - x[:, 1])) if len(g) else None,
            'pearson_r_vs_grokking_step': float(np.corrcoef(x[:, 0], x[:, 1])[0, 1])
            if len(g) > 2 and np.std(x[:, 0]) > 0 else None,
            'steps_of_runs_that_never_grok': [drop.get(r['run']) for r in per_run
                                              if r['grokking_step'] is None]}
      falls = []
      for r in per_run:
        v, m, gk = r['llc_parts'][p], r['memorization_step'], r['grokking_step']
        if m is None or gk is None:
          continue
        idx = [j for j, st in enumerate(r['llc_steps']) if m < st < gk]
        falls += [v[j + 1] < v[j] for j in idx[:-1]]
      entry['plateau_pairs_that_fell_fraction'] = float(np.mean(falls)) if falls else None
      entry['per_run'] = by_run
      llc_phases[p] = entry
  chains_check = {}
  if a.chains_dir and parts:  # the SGLD's own noise at the settings used, per module
    more = results.run_rows(a.chains_dir, 'lenses')
    for p in parts:
      rows = []
      for r in per_run:
        for row in more[r['run']]:
          if row['step'] in r['llc_steps'] and row.get(f'llc_part/{p}') is not None:
            one = r['llc_parts'][p][r['llc_steps'].index(row['step'])]
            rows.append((row[f'llc_part/{p}'], row[f'llc_part_std/{p}'], one))
      x = np.array(rows, float)
      chains_check[p] = {
          'runs_x_steps': len(x),
          'mean_of_chains_median': float(np.median(x[:, 0])),
          'std_over_chains_median': float(np.median(x[:, 1])),
          'std_over_chains_over_mean_median': float(np.median(x[:, 1] / np.abs(x[:, 0]))),
          'one_chain_minus_mean_abs_median': float(np.median(np.abs(x[:, 2] - x[:, 0]))),
          'one_chain_minus_mean_over_mean_median': float(np.median(np.abs(x[:, 2] - x[:, 0])
                                                                   / np.abs(x[:, 0]))),
          'one_chain_minus_mean_over_mean_max': float(np.max(np.abs(x[:, 2] - x[:, 0])
                                                             / np.abs(x[:, 0])))}
    chains_check['steps'] = sorted({row['step'] for rs in more.values() for row in rs})
    chains_check['chains'] = json.load(open(os.path.join(a.chains_dir, 'config.json')))[
        'lenses']['llc_chains']
  with_sling = [r for r in per_run if r['slingshot_step']]
  crossed_first = [r for r in with_sling if r['first_checkpoint_precond_ge_38_over_lr'] is not None
                   and r['first_checkpoint_precond_ge_38_over_lr'] <= r['slingshot_step']]
  out = {'workdir': a.workdir, 'seeds': len(runs), 'complete': os.path.exists(path),
         'last_checkpoint': int(max(r['steps'][-1] for r in per_run)), 'lr': runs[0]['hparams']['lr'],
         'threshold_38_over_lr': 38 / runs[0]['hparams']['lr'],
         'runs_with_slingshot': len(with_sling),
         'slingshot_steps': [r['slingshot_step'] for r in per_run],
         'runs_ever_at_or_above_38_over_lr': int(sum(r['first_checkpoint_precond_ge_38_over_lr']
                                                     is not None for r in per_run)),
         'runs_crossing_at_or_before_slingshot': len(crossed_first),
         'runs_crossing_after_step_1000': int(sum(bool(r['late_crossings']) for r in per_run)),
         'runs_late_crossing_within_one_checkpoint_of_slingshot': int(sum(
             r['late_crossing_within_one_checkpoint_of_slingshot'] for r in per_run)),
         'late_ratio_peak_step_minus_slingshot': [r['late_ratio_peak_step_minus_slingshot']
                                                  for r in per_run],
         'late_ratio_max_median': float(np.median([r['late_ratio_max'] for r in per_run
                                                   if r['late_ratio_max'] is not None])),
         'ratio_median_by_step': {int(st): float(np.nanmedian(
             [r['ratio'][r['steps'].index(st)] for r in per_run if st in r['steps']]))
             for st in per_run[0]['steps']},
         'memorization_steps': [r['memorization_step'] for r in per_run],
         'grokking_steps': [r['grokking_step'] for r in per_run],
         'ratio_max_median': float(np.median([r['ratio_max'] for r in per_run])),
         'ratio_before_slingshot_median': float(np.median(
             [r['ratio_at_last_checkpoint_before_slingshot'] for r in with_sling
              if r['ratio_at_last_checkpoint_before_slingshot'] is not None])) if with_sling else None,
         'ratio_after_slingshot_median': float(np.median(
             [r['ratio_at_first_checkpoint_after_slingshot'] for r in with_sling
              if r['ratio_at_first_checkpoint_after_slingshot'] is not None])) if with_sling else None,
         'plain_top1_max_times_lr_over_2_median': float(np.median(
             [r['plain_top1_max_times_lr_over_2'] for r in per_run])),
         'llc_parts_by_phase': llc_phases,
         'llc_chains_check': chains_check,
         'per_run': per_run}
  with open(os.path.join(a.out, a.name + '.json'), 'w') as fh:
    json.dump(out, fh, indent=1)
  print(json.dumps({k: v for k, v in out.items() if k != 'per_run'}, indent=1))


if __name__ == '__main__':
  main()
