"""Study: is Timmy's breakthrough at step ~4000 a property of the task, or of a seed?

Runs configs/timmy.py:sweep (32 seeds x lr 0.03, 0.1, 0.3, 6000 steps each: all
96 runs are one vmapped program, since lr is a traced value) and writes experiments/results/timmy_sweep.{md,png}:
the sweep report, the plateau check at the recorded steps, and violet.

  python experiments/timmy_sweep.py [--workdir runs/timmy_sweep]

Takes about 1.5 minutes on a 2-core CPU (89 s measured 2026-11-21).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORDED = {200: 0.7264, 1000: 0.7173, 3000: 0.7159}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'timmy_sweep'))
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  args = ap.parse_args()
  t = time.time()
  subprocess.run([sys.executable, '-m', 'tinyjax.run', '--config', 'configs/timmy.py:sweep',
                  '--workdir', args.workdir, '--noprogress'], cwd=ROOT, check=True)
  wall = time.time() - t
  summary = json.load(open(os.path.join(args.workdir, 'summary.json')))
  runs = summary['runs']
  lines = [f'Measured {time.strftime("%Y-%m-%d")}, `python experiments/timmy_sweep.py` '
           f'({len(runs)} runs x 6000 steps, {wall:.0f} s wall including compilation).', '',
           summary['report'].split('\n', 1)[1], '']
  lines.append('Plateau check against the recorded run (loss at step, per learning rate):')
  lines.append('')
  lines.append('| lr | step | recorded | median | min | max | seeds within 0.002 |')
  lines.append('|---|---|---|---|---|---|---|')
  for lr in sorted({r['swept']['lr'] for r in runs}):
    rs = [r for r in runs if r['swept']['lr'] == lr]
    for step, rec in RECORDED.items():
      v = np.asarray([r['probe'][str(step)] for r in rs])
      ok = int((np.abs(v - rec) <= 0.002).sum())
      lines.append(f'| {lr:g} | {step} | {rec} | {np.median(v):.4f} | {v.min():.4f} | '
                   f'{v.max():.4f} | {ok}/{len(rs)} |')
  lines.append('')
  lines.append('What the held-out colour produces (greedy, after training), per learning rate:')
  lines.append('')
  for lr in sorted({r['swept']['lr'] for r in runs}):
    rs = [r for r in runs if r['swept']['lr'] == lr]
    outs = {}
    for r in rs:
      outs[r['generations']['violet']] = outs.get(r['generations']['violet'], 0) + 1
    top = sorted(outs.items(), key=lambda kv: -kv[1])[:4]
    lines.append(f'- lr {lr:g}: ' + '; '.join(f'`{k!r}` x{n}' for k, n in top)
                 + (f'; {len(outs) - 4} other output(s)' if len(outs) > 4 else ''))
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'timmy_sweep.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  shutil.copy(os.path.join(args.workdir, 'sweep.png'), os.path.join(args.out, 'timmy_sweep.png'))
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
