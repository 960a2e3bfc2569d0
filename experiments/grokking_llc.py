"""Grokking through the local learning coefficient, with Nanda et al.'s
progress measures beside it.

  python -m tinyjax.run --config configs/grokking_small.py:llc --workdir runs/grokking_llc
  python experiments/grokking_llc.py [--workdir runs/grokking_llc]

Reads the workdir (nothing is trained here): per run the LLC at every
checkpoint (lenses.jsonl; SGLD settings in the config, chosen by
experiments/llc_calibration.py), the losses and milestones (metrics.jsonl,
summary.json), and, replaying each checkpoint, Nanda's measures on the full
p x p logits grid (tinyjax.lenses): restricted loss (key frequencies only,
all pairs), excluded loss (key frequencies removed, train pairs), the Gini
coefficient of the embedding's per-frequency norms and the sum of squared
weights. Key frequencies are found at each run's last checkpoint and replayed
(as Nanda et al.). Writes experiments/results/grokking_llc.{md,png}.
"""

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tinyjax import lenses  # noqa: E402
from tinyjax import results  # noqa: E402
from tinyjax import restore  # noqa: E402
from tinyjax.tasks import modular_split  # noqa: E402


def measures(prog, params, p, pairs_x, answers, train_mask, freqs=None):
  model = restore.run_model(prog, params)
  logits = np.asarray(model(pairs_x)[0][:, -1, :p])  # the answer, over residues
  if freqs is None:
    return logits
  r, e = lenses.restricted_excluded_loss(jnp.asarray(logits), answers, train_mask, p, freqs)
  g = lenses.gini(lenses.embedding_frequency_norms(model.embed.embedding[...], p))
  sq = sum(float(jnp.sum(jnp.square(x))) for x in jax.tree.leaves(params))
  return float(r), float(e), float(g), sq


def nearest(steps, values, t):
  if t is None:
    return None
  i = int(np.argmin(np.abs(np.asarray(steps) - t)))
  return values[i]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'grokking_llc'))
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  a = ap.parse_args()
  summary = json.load(open(os.path.join(a.workdir, 'summary.json')))
  ROWS = results.run_rows(a.workdir)  # noqa: N806
  LENS_ROWS = results.run_rows(a.workdir, 'lenses')  # noqa: N806
  runs = summary['runs']
  fig, axes = plt.subplots(2, 3, figsize=(16, 8))
  axes = axes.ravel()
  table = []
  for k, run in enumerate(runs):
    prog, group, index = restore.open_run(a.workdir, run['name'])
    cfg = group.config.task
    p = cfg.p
    train_pairs, _ = modular_split(p, cfg.op, cfg.train_fraction, cfg.split_seed)
    in_train = np.zeros((p, p), bool)
    for x, y in train_pairs:
      in_train[x, y] = True
    eq = prog.task.vocab.id('=')
    grid = np.array([[x, y, eq] for x in range(p) for y in range(p)], np.int32)
    answers = jnp.asarray((grid[:, 0] + grid[:, 1]) % p)
    mask = in_train.reshape(-1)
    lens_rows = LENS_ROWS[run['name']]
    steps = [r['step'] for r in lens_rows]
    llc = np.array([r['llc'] if r['llc'] is not None else np.nan for r in lens_rows])
    final_step, final_params = restore.load_params(a.workdir, prog, group, index, steps[-1])
    freqs = lenses.key_frequencies(measures(prog, final_params, p, grid, answers, mask), p)
    nanda = np.array([measures(prog, restore.load_params(a.workdir, prog, group, index, s)[1],
                               p, grid, answers, mask, freqs) for s in steps])
    rows = ROWS[run['name']]
    ev = [r for r in rows if r.get('test/loss') is not None]
    mem, grok = run.get('memorization_step'), run.get('grokking_step')
    peak = steps[int(np.nanargmax(llc))]
    table.append((run['name'], mem, grok, peak, nearest(steps, llc, mem),
                  nearest(steps, llc, grok), llc[-1], freqs, nanda[-1, 2]))
    c = f'C{k}'
    axes[0].plot(steps, llc, c, lw=0.9, marker='.', ms=3)
    axes[1].plot([r['step'] for r in ev], [r['test/loss'] for r in ev], c, lw=0.8)
    axes[1].plot([r['step'] for r in ev], [r['loss'] for r in ev], c, lw=0.8, ls=':')
    axes[2].plot(steps, nanda[:, 0], c, lw=0.8)
    axes[3].plot(steps, nanda[:, 1], c, lw=0.8)
    axes[4].plot(steps, nanda[:, 2], c, lw=0.8)
    axes[5].plot(steps, nanda[:, 3], c, lw=0.8)
    for ax in axes:
      for t, ls in ((mem, ':'), (grok, '--')):
        if t is not None:
          ax.axvline(t, color=c, lw=0.5, ls=ls)
  titles = ('LLC (SGLD, lenses.jsonl)', 'test loss (solid), train loss (dotted)',
            'restricted loss (key frequencies only)', 'excluded loss (train pairs)',
            'Gini of embedding frequency norms', 'sum of squared weights')
  for ax, t in zip(axes, titles):
    ax.set_title(t, fontsize=10)
    ax.set_xlabel('step (dotted: memorization_step, dashed: grokking_step)', fontsize=8)
  axes[1].set_yscale('log')
  axes[2].set_yscale('log')
  fig.tight_layout()
  os.makedirs(a.out, exist_ok=True)
  fig.savefig(os.path.join(a.out, 'grokking_llc.png'), dpi=100)
  lens_cfg = group.config.lenses
  lines = [f'`configs/grokking_small.py:llc`, {len(runs)} seeds; LLC: {lens_cfg.llc_chains} chains x '
           f'{lens_cfg.llc_draws} draws after {lens_cfg.llc_burnin}, epsilon {lens_cfg.llc_epsilon}, '
           f'gamma {lens_cfg.llc_gamma}, n*beta {lens_cfg.llc_nbeta or "m/ln m"}, batch '
           f'{lens_cfg.llc_batch}; devices {summary["devices"]}.', '',
           '| run | memorization_step | grokking_step | LLC peak step | LLC at memorization '
           '| LLC at grokking | LLC at end | key frequencies | final Gini |',
           '|---|---|---|---|---|---|---|---|---|']
  f = lambda v: '-' if v is None else f'{v:.1f}'
  for name, mem, grok, peak, lm, lg, le, freqs, g in table:
    lines.append(f'| {name} | {mem} | {grok} | {peak} | {f(lm)} | {f(lg)} | {le:.1f} | '
                 f'{freqs} | {g:.3f} |')
  with open(os.path.join(a.out, 'grokking_llc.md'), 'w') as fh:
    fh.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
