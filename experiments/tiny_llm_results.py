"""tiny-llm: the full run beside the original's recorded table, per-class curves, samples.

  python -m tinyjax.run --config configs/tiny_llm.py --workdir runs/tiny_llm   # ~30-40 min
  python experiments/tiny_llm_results.py [--workdir runs/tiny_llm]

Reads the workdir (nothing is trained here) and writes
experiments/results/tiny_llm.{md,png}: train/val loss at every recorded step
next to peek's training.json (spec section 5) with the differences, the
per-class validation losses (letter, space, newline, punct) over training, and
the 160-character sample after "ROMEO:" (temperature 1) from summary.json.
"""

import argparse
import json
import os
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tinyjax import results  # noqa: E402
# peek's public/data/training.json, losses rounded to 3 decimals.
RECORDED = {0: (4.330, 4.339), 100: (2.671, 2.643), 250: (2.488, 2.468), 500: (2.382, 2.409),
            1000: (2.116, 2.162), 1500: (1.910, 1.969), 2000: (1.752, 1.946),
            3000: (1.594, 1.816), 4000: (1.469, 1.677), 5000: (1.476, 1.741)}
CLASSES = ('letter', 'space', 'newline', 'punct')


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'tiny_llm'))
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  a = ap.parse_args()
  summary = json.load(open(os.path.join(a.workdir, 'summary.json')))
  run = summary['runs'][0]
  rows = results.run_rows(a.workdir)[run['name']]
  evals = {r['step']: r for r in rows if r.get('val/loss') is not None}
  lines = [f'`configs/tiny_llm.py`, {run["num_params"]:,} parameters, seed 0; '
           f'devices {summary["devices"]}.', '',
           '| step | recorded train | tinyjax train | diff | recorded val | tinyjax val | diff |',
           '|---:|---:|---:|---:|---:|---:|---:|']
  worst = 0.0
  for step, (rt, rv) in RECORDED.items():
    r = evals.get(step)
    if r is None:
      lines.append(f'| {step} | {rt:.3f} | - | - | {rv:.3f} | - | - |')
      continue
    t, v = r['train/loss'], r['val/loss']
    worst = max(worst, abs(t - rt), abs(v - rv))
    lines.append(f'| {step} | {rt:.3f} | {t:.3f} | {t - rt:+.3f} | {rv:.3f} | {v:.3f} | '
                 f'{v - rv:+.3f} |')
  lines += ['', f'Largest difference: {worst:.3f} (acceptance: 0.10).', '',
            'Validation loss per class of the next character, at the recorded steps:', '',
            '| step | ' + ' | '.join(CLASSES) + ' |', '|---:|' + '---:|' * len(CLASSES)]
  for step in RECORDED:
    if step in evals:
      lines.append(f'| {step} | ' + ' | '.join(f'{evals[step][f"val/loss/{c}"]:.3f}'
                                               for c in CLASSES) + ' |')
  sample = run['generations'].get('ROMEO:', '')
  lines += ['', 'Sample after "ROMEO:" at temperature 1 (160 characters, key 0):', '', '```',
            'ROMEO:' + sample, '```']
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, 'tiny_llm.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
  steps = [r['step'] for r in rows]
  ax1.plot(steps, [r['loss'] for r in rows], lw=0.8, alpha=0.6, label='tinyjax minibatch')
  es = sorted(evals)
  ax1.plot(es, [evals[s]['train/loss'] for s in es], 'o-', label='tinyjax train (eval)')
  ax1.plot(es, [evals[s]['val/loss'] for s in es], 's-', label='tinyjax val (eval)')
  rs = sorted(RECORDED)
  ax1.plot(rs, [RECORDED[s][0] for s in rs], 'k^--', ms=5, label='recorded train')
  ax1.plot(rs, [RECORDED[s][1] for s in rs], 'kv:', ms=5, label='recorded val')
  ax1.set(xlabel='step', ylabel='loss (nats / char)', title='tiny-llm: tinyjax vs recorded',
          ylim=(1.2, 4.6))
  ax1.legend(fontsize=8)
  for c in CLASSES:
    pts = [(r['step'], r[f'loss/{c}']) for r in rows if r.get(f'loss/{c}') is not None]
    ax2.plot(*zip(*pts), lw=1, label=c)
  ax2.set(xlabel='step', ylabel='minibatch loss of the class', title='per-class loss',
          yscale='log')
  ax2.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(a.out, 'tiny_llm.png'), dpi=110)
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
