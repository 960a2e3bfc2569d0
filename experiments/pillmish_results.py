"""Pillmish: Pilish decoding measured on a trained word-level workdir.

  python -m tinyjax.run --config configs/pillmish.py --workdir runs/pillmish   # ~45 min CPU
  python experiments/pillmish_results.py [--workdir runs/pillmish] [--words 60]

Writes experiments/results/pillmish.md:
  - the model (parameters, vocabulary), train/val loss at every eval, OOV rate;
  - constraint satisfaction: constrained continuations of the three prompts
    over 8 sampling seeds at temperatures 0, 0.7 and 1.0 (>= 1,000 words),
    each word checked against pi's digits;
  - fluency: the UNconstrained model's per-word NLL (and perplexity) of
    (a) its own unconstrained samples (temperature 1), (b) constrained samples
    (temperature 0.7), (c) constrained greedy, (d) constrained beam search
    (beam 8), and the validation loss for held-out text; per digit, the NLL of
    the words at that digit and the constraint's cost -log sum_{t allowed} p(t);
  - which digits are hard: the vocabulary's word count per length;
  - samples (greedy, beam, sampled) and the share of immediate word repeats.
"""

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs.pillmish import PROMPTS  # noqa: E402

SEEDS = range(8)
TEMPS = (0.0, 0.7, 1.0)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'pillmish'))
  ap.add_argument('--words', type=int, default=60)
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  a = ap.parse_args()
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from tinyjax import pilish, restore, results, sampler

  prog, group, index = restore.open_run(a.workdir)
  step, params = restore.load_params(a.workdir, prog, group, index)
  vocab = prog.task.vocab
  n = a.words
  hook = pilish.Pilish(vocab.tokens, n)
  table = pilish.length_table(vocab.tokens)
  digits = pilish.pi_digits(n)

  @jax.jit
  def logprobs(p, toks):
    logits, _ = nnx.merge(prog.graphdef, jax.tree.map(lambda x: x[0], p))(toks[None])
    return jax.nn.log_softmax(logits[0].astype(jnp.float32), -1)

  allowed_by_digit = {d: jnp.asarray(table[pilish.word_length(d)]) for d in range(10)}

  def score(prompt, text):
    """Per new word: (NLL under the free model, -log allowed mass of its digit)."""
    p_ids, c_ids = vocab.encode(prompt), vocab.encode(text)
    lp = np.asarray(logprobs(params, jnp.asarray(p_ids + c_ids, jnp.int32)))
    nll, cost = [], []
    for i, tok in enumerate(c_ids):
      row = lp[len(p_ids) + i - 1]
      nll.append(-row[tok])
      d = int(digits[i]) if i < len(digits) else None
      if d is not None:
        m = np.asarray(allowed_by_digit[d])
        cost.append(-np.logaddexp.reduce(row[m]))
    return np.asarray(nll), np.asarray(cost)

  gen = lambda settings, seed, constraint=None, beam=0: prog.generations(
      params, n, PROMPTS, settings, seed, constraint, beam)[0]

  # Satisfaction over seeds and temperatures.
  checked = ok = 0
  samples = {}
  nll_by = {'free (T=1)': [], 'constrained T=0.7': [], 'constrained greedy': [],
            'constrained beam 8': []}
  per_digit_nll = {d: [] for d in range(10)}
  per_digit_cost = {d: [] for d in range(10)}
  repeats = [0, 0]
  for t in TEMPS:
    for seed in SEEDS:
      out = gen(sampler.Settings(temperature=t), seed, hook)
      for prompt, text in out.items():
        words = text.split()
        res = hook.check(words)
        checked += len(res)
        ok += sum(r[3] for r in res)
        repeats[0] += sum(w1 == w2 for w1, w2 in zip(words, words[1:]))
        repeats[1] += max(len(words) - 1, 0)
        if t == 0.7:
          nll, cost = score(prompt, text)
          nll_by['constrained T=0.7'].extend(nll)
          for i, (x, c) in enumerate(zip(nll, cost)):
            per_digit_nll[int(digits[i])].append(x)
            per_digit_cost[int(digits[i])].append(c)
        if seed == 0:
          samples[(t, prompt)] = text
  for seed in SEEDS:
    for prompt, text in gen(sampler.Settings(temperature=1.0), seed).items():
      nll_by['free (T=1)'].extend(score(prompt, text)[0])
      if seed == 0:
        samples[('free', prompt)] = text
  for prompt, text in gen(sampler.GREEDY, 0, hook).items():
    nll_by['constrained greedy'].extend(score(prompt, text)[0])
  beams = gen(sampler.GREEDY, 0, hook, beam=8)
  for prompt, text in beams.items():
    nll_by['constrained beam 8'].extend(score(prompt, text)[0])
    samples[('beam', prompt)] = text

  summary = json.load(open(os.path.join(a.workdir, 'summary.json')))
  run = summary['runs'][index]
  rows = results.run_rows(a.workdir)[run['name']]
  evals = [r for r in rows if r.get('val/loss') is not None]
  unk = vocab.id('[UNK]')
  val = prog.task.evals['val'].tokens_N
  L = [f'`configs/pillmish.py`, step {step}: {prog.num_params:,} parameters, vocabulary '
       f'{len(vocab):,} (the original: 30,000); training stream {len(prog.task.train.tokens_N):,} '
       f'word tokens, validation {len(val):,} (OOV rate {float((val == unk).mean()):.2%}).', '',
       '| step | train loss | val loss | val ppl |', '|---:|---:|---:|---:|']
  for r in evals:
    L.append(f'| {r["step"]} | {r["train/loss"]:.3f} | {r["val/loss"]:.3f} | '
             f'{np.exp(r["val/loss"]):.1f} |')
  L += ['', f'Constraint satisfaction: **{ok} of {checked} words** match pi\'s digits '
        f'({len(SEEDS)} seeds x temperatures {TEMPS} x {len(PROMPTS)} prompts x {n} words).',
        f'Immediate word repeats in constrained text: {repeats[0]} of {repeats[1]} pairs '
        f'({repeats[0] / max(repeats[1], 1):.1%}; the recorded sample: 1 of 59).', '',
        'Fluency: per-word NLL under the unconstrained model (nats; ppl = exp):', '',
        '| text | words | NLL | ppl |', '|---|---:|---:|---:|']
  for name, v in nll_by.items():
    L.append(f'| {name} | {len(v)} | {np.mean(v):.3f} | {np.exp(np.mean(v)):.1f} |')
  L.append(f'| held-out text (final val loss) | {len(val):,} | {evals[-1]["val/loss"]:.3f} | '
           f'{np.exp(evals[-1]["val/loss"]):.1f} |')
  L += ['', 'Per digit (constrained, T=0.7): words in the vocabulary of that length, the '
        'NLL of the chosen words and the constraint\'s cost -log p(allowed):', '',
        '| digit | length | vocabulary words | NLL | cost |', '|---:|---:|---:|---:|---:|']
  for d in (1, 2, 3, 4, 5, 6, 7, 8, 9, 0):
    length = pilish.word_length(d)
    v, c = per_digit_nll[d], per_digit_cost[d]
    L.append(f'| {d} | {length} | {int(table[length].sum())} | '
             + (f'{np.mean(v):.2f} | {np.mean(c):.2f} |' if v else '- | - |'))
  L += ['', 'Samples (seed 0):', '']
  for key, text in samples.items():
    kind, prompt = key
    label = {'free': 'unconstrained T=1', 'beam': 'Pilish, beam 8'}.get(
        kind, f'Pilish, T={kind}' if kind else 'Pilish, greedy')
    L.append(f'- {label}, "{prompt}": `{prompt} {text}`')
  os.makedirs(a.out, exist_ok=True)
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.plot([r['step'] for r in rows], [r['loss'] for r in rows], lw=0.8, alpha=0.6,
          label='minibatch (dropout on)')
  ax.plot([r['step'] for r in evals], [r['train/loss'] for r in evals], 'o-', label='train (eval)')
  ax.plot([r['step'] for r in evals], [r['val/loss'] for r in evals], 's-', label='val (eval)')
  for c in ('word', 'punct'):
    pts = [(r['step'], r[f'val/loss/{c}']) for r in evals if r.get(f'val/loss/{c}') is not None]
    if pts:
      ax.plot(*zip(*pts), ':', label=f'val, {c} targets')
  ax.set(xlabel='step', ylabel='loss (nats / word token)', title='Pillmish (word-level TinyStories)')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(a.out, 'pillmish.png'), dpi=110)
  with open(os.path.join(a.out, 'pillmish.md'), 'w') as f:
    f.write('\n'.join(L) + '\n')
  print('\n'.join(L))


if __name__ == '__main__':
  main()
