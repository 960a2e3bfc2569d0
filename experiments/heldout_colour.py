"""Can Timmy ever repeat the colour it never saw? A grid of conditions, each
16 seeds, and the rate at which `violet` -> ' violet violet violet violet'.

  python experiments/heldout_colour.py [--seeds 16] [--workdir runs/heldout]

Measured so far: 0 of 64 seeds in the recorded setup. The grid below was
declared in this file before any of it was run (commit history); each
condition says why it could plausibly let a held-out token generalize:

  baseline   the recorded setup (GD lr 0.1, untied unembedding, 5 colours):
             the reference rate.
  tied       tie_embeddings: the unembedding is the embedding, so a head
             whose OV circuit copies (W_E W_OV W_E^T positive) maps violet's
             own input vector to violet's own logit, with no violet-specific
             weight to learn.
  colours20  20 training colours instead of 5: a lookup table of colours
             costs more, a general copy circuit pays more.
  tied20     both.
  adamw_wd   AdamW lr 0.01 with weight decay 0.1: pressure towards the
             low-norm, general solution (the grokking mechanism).

Every run is 6,000 steps (the config's default). Writes
experiments/results/heldout_colour.md: per condition the seeds, the
breakthroughs (loss/content < 0.8), the held-out rate, the copy score
of the most copying layer-1 head at the end (median over seeds), and what
violet's greedy continuation is, with its count over the seeds.

What violet gives at 6,000 steps in the baseline and tied conditions (stored
after the first result, so the rates above are untouched):
  python experiments/heldout_colour.py --conditions baseline,tied \
      --out_name heldout_colour_outputs

Follow-up, declared after the first result (tied, colours20 and tied20 had
not broken through in 6,000 steps in any seed, so their rate said nothing
about generalization): the same three at 20,000 steps, everything else equal:
  python experiments/heldout_colour.py --steps 20000 --conditions tied,colours20,tied20 \
      --out_name heldout_colour_20k
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import numpy as np  # noqa: E402

from configs import timmy  # noqa: E402
from tinyjax import train  # noqa: E402

MORE = ('indigo', 'pink', 'brown', 'black', 'white', 'grey', 'cyan', 'magenta', 'gold',
        'silver', 'beige', 'maroon', 'navy', 'olive', 'teal')


def condition(name: str, seeds: int, steps: int):
  c = timmy.get_config()
  with c.unlocked():
    c.sweep.seeds = seeds
    c.train.steps = steps
    c.checkpoint.log_spaced = False
    c.checkpoint.every = 0
    if name in ('tied', 'tied20'):
      c.model.tie_embeddings = True
    if name in ('colours20', 'tied20'):
      colours = timmy.COLOURS[:-1] + MORE + ('violet',)
      c.task.tokens = colours
      c.task.classes = {'content': colours, 'space': (' ',), 'eos': ('<EOS>',)}
      c.eval.prompts = colours
    if name == 'adamw_wd':
      c.optimizer.update(name='adamw', lr=0.01, weight_decay=0.1)
  return c


CONDITIONS = ('baseline', 'tied', 'colours20', 'tied20', 'adamw_wd')


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--seeds', type=int, default=16)
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'heldout'))
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  ap.add_argument('--steps', type=int, default=6000)
  ap.add_argument('--conditions', default=','.join(CONDITIONS))
  ap.add_argument('--out_name', default='heldout_colour')
  a = ap.parse_args()
  lines = [f'Measured {time.strftime("%Y-%m-%d")}, `python experiments/heldout_colour.py '
           f'--seeds {a.seeds} --steps {a.steps} --conditions {a.conditions}` (conditions '
           'declared in the file before running).', '',
           '| condition | seeds | breakthroughs | violet repeated | rate | median final copy score, '
           'best layer-1 head | seconds | what violet gives (greedy) |',
           '|---|---|---|---|---|---|---|---|']
  for name in a.conditions.split(','):
    t = time.time()
    w = os.path.join(a.workdir, name + ('' if a.steps == 6000 else f'_{a.steps}'))
    summary = train.train_and_evaluate(condition(name, a.seeds, a.steps), w, overwrite=True,
                                       progress=False)
    runs = summary['runs']
    broke = sum(r['breakthrough_step'] is not None for r in runs)
    right = sum(bool(r['generation_correct'].get('violet')) for r in runs)
    copy = [max(v for k, v in r['final'].items() if k.startswith('copying/layer1/'))
            for r in runs]
    outs = {}
    for r in runs:
      outs[r['generations']['violet']] = outs.get(r['generations']['violet'], 0) + 1
    outs = '; '.join(f'`{k!r}` x{n}' for k, n in sorted(outs.items(), key=lambda kv: -kv[1]))
    lines.append(f'| {name} | {len(runs)} | {broke} | {right} | {right / len(runs):.2f} | '
                 f'{np.median(copy):.3f} | {time.time() - t:.0f} | {outs} |')
    print(lines[-1], flush=True)
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, a.out_name + '.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
