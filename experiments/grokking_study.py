"""Grokking step across seeds, with and without Grokfast-EMA.

  python experiments/grokking_study.py [--config configs/grokking_small.py:sweep_grokfast]
      [--workdir /tmp/grokking_study] [--out experiments/results/grokking]
      [--lambdas 0,0.5,5]

Trains the config through tinyjax.train (the sweep variant puts every seed and
both grokfast_lambda values in one vmapped program, so the arms differ in
lambda only), then writes to --out:
  grokking.md   per-run memorization / grokking steps, their ratio, final
                accuracies, and per-arm medians with the Grokfast speed-up;
  grokking.png  train (dashed) and test (solid) accuracy of every run against
                the step (log x), and the weight norm.
An existing finished --workdir is reused (tinyjax resumes; nothing retrains).
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tinyjax import cli  # noqa: E402
from tinyjax import train  # noqa: E402
from tinyjax import results  # noqa: E402
from experiments.time_steps import load  # noqa: E402


def _fmt(v):
  return '—' if v is None else f'{v:g}' if isinstance(v, float) else str(v)


def _median(values, cap):
  """Median with runs that never got there counted as `cap`; True when one of
  those is a middle value, so the median is only a lower bound."""
  xs = sorted((cap, True) if v is None else (v, False) for v in values)
  mid = xs[(len(xs) - 1) // 2: len(xs) // 2 + 1]
  return statistics.median(x for x, _ in xs), any(c for _, c in mid)


def table(summary, steps):
  lines = ['| run | grokfast λ | seed | memorization_step | grokking_step | ratio | '
           'final train acc | final test acc |', '|---|---|---|---|---|---|---|---|']
  arms = {}
  for r in summary['runs']:
    lam = r['hparams'].get('grokfast_lambda', 0.0)
    mem, grok = r['memorization_step'], r['grokking_step']
    ratio = grok / mem if grok is not None and mem else None
    f = r['final']
    lines.append(f"| {r['name']} | {lam:g} | {r['hparams']['seed']} | {_fmt(mem)} | "
                 f"{_fmt(grok)} | {'—' if ratio is None else f'{ratio:.1f}'} | "
                 f"{f['accuracy']:.3f} | {f['test/accuracy']:.3f} |")
    arms.setdefault(lam, []).append(r)
  lines += ['', '| grokfast λ | runs | median memorization_step | median grokking_step | '
            'runs with grokking_step >= 5 x memorization_step and final test acc >= 0.95 |',
            '|---|---|---|---|---|']
  medians = {}
  for lam, rs in sorted(arms.items()):
    mm, _ = _median([r['memorization_step'] for r in rs], steps)
    mg, censored = _median([r['grokking_step'] for r in rs], steps)
    medians[lam] = (mg, censored)
    good = sum(1 for r in rs if r['grokking_step'] is not None and r['memorization_step']
               and r['grokking_step'] >= 5 * r['memorization_step']
               and r['final']['test/accuracy'] >= 0.95)
    lines.append(f"| {lam:g} | {len(rs)} | {mm:g} | {'> ' if censored else ''}{mg:g} | "
                 f'{good} / {len(rs)} |')
  if 0.0 in medians and len(medians) > 1:
    base, base_c = medians[0.0]
    for lam, (mg, c) in medians.items():
      if lam != 0.0:
        bound = ' (a lower bound: some baseline runs never grokked)' if base_c else ''
        bound = ' (an upper bound: some Grokfast runs never grokked)' if c else bound
        lines.append(f'\nGrokfast λ={lam:g}: speed-up of the median grokking step '
                     f'(baseline / Grokfast) {base / mg:.2f}x ({base:g} -> {mg:g}){bound}.')
  return '\n'.join(lines) + '\n'


def figure(summary, workdir, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, (ax, ax_n) = plt.subplots(1, 2, figsize=(13, 4.5))
  colors = {}
  ROWS = results.run_rows(workdir)  # noqa: N806
  for r in summary['runs']:
    lam = r['hparams'].get('grokfast_lambda', 0.0)
    color = colors.setdefault(lam, f'C{len(colors)}')
    rows = ROWS[r['name']]
    rows = [x for x in rows if x['step'] > 0]
    tr = [(x['step'], x['accuracy']) for x in rows if x.get('accuracy') is not None]
    te = [(x['step'], x['test/accuracy']) for x in rows if x.get('test/accuracy') is not None]
    pn = [(x['step'], x['param_norm']) for x in rows if x.get('param_norm') is not None]
    label = f'λ={lam:g}' if r['hparams']['seed'] == 0 else None
    ax.plot(*zip(*tr), '--', color=color, alpha=0.6, lw=1)
    ax.plot(*zip(*te), '-', color=color, alpha=0.9, lw=1.2, label=label)
    ax_n.plot(*zip(*pn), '-', color=color, alpha=0.8, lw=1, label=label)
  ax.set(xscale='log', xlabel='step', ylabel='accuracy (answer token)',
         title='train (dashed) and test (solid) accuracy, every seed')
  ax.axhline(0.95, color='gray', lw=0.5, ls=':')
  ax_n.set(xscale='log', xlabel='step', ylabel='param_norm', title='total weight norm')
  for a in (ax, ax_n):
    a.legend(title='grokfast', loc='best')
    a.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=80)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--config', default='configs/grokking_small.py:sweep_grokfast')
  ap.add_argument('--workdir', default='/tmp/grokking_study')
  ap.add_argument('--out', default='experiments/results/grokking')
  ap.add_argument('--lambdas', default='',
                  help='comma-separated grokfast_lambda values to sweep instead '
                       "of the config's, e.g. 0.5,5")
  a = ap.parse_args()
  cli.set_cpu_devices(0)  # as tinyjax.run: the runs split over the cores
  config = load(a.config)
  if a.lambdas:
    with config.unlocked():
      config.sweep.grid = {'optimizer': {
          'grokfast_lambda': tuple(float(x) for x in a.lambdas.split(','))}}
  timing_path = os.path.join(a.workdir, 'study_timing.json')
  t0, c0 = time.perf_counter(), time.process_time()
  summary = train.train_and_evaluate(config, a.workdir, progress=False)
  timing = {'wall_s': time.perf_counter() - t0, 'cpu_s': time.process_time() - c0}
  if os.path.exists(timing_path):  # a finished workdir: keep the training's times
    timing = json.load(open(timing_path))
  else:
    json.dump(timing, open(timing_path, 'w'))
  os.makedirs(a.out, exist_ok=True)
  figure(summary, a.workdir, os.path.join(a.out, 'grokking.png'))
  md = (f'# Grokking study: `{a.config}`'
        + (f' with grokfast_lambda in ({a.lambdas})' if a.lambdas else '') + '\n\n'
        f'{len(summary["runs"])} runs x {config.train.steps} steps, one vmapped program; '
        f'milestones at eval.every={config.eval.every} resolution for test accuracy. '
        f'Training took {timing["wall_s"]:.0f} s wall, {timing["cpu_s"]:.0f} s process '
        'CPU (compilation included) on a 2-core CPU shared with other jobs.\n\n'
        + table(summary, config.train.steps)
        + '\n![accuracy curves](grokking.png)\n')
  with open(os.path.join(a.out, 'grokking.md'), 'w') as f:
    f.write(md)
  print(md)


if __name__ == '__main__':
  main()
