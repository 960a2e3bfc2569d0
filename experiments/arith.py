r"""The arithmetic experiments (issue 5): runs them and writes their tables.

  python experiments/arith.py babyllm   # 64-seed sweeps of both readings
  python experiments/arith.py grid      # babyLLM: 16 seeds x lr x hidden_dim
  python experiments/arith.py addy      # addy default, :original, 4 seeds
  python experiments/arith.py ablations # addy: which change makes it faster
  python experiments/arith.py tables    # only re-read the summaries

Every run is the ordinary command, `python -m tinyjax.run --config ...
--workdir runs/arith/<name>` (an existing workdir is resumed, a finished one
only re-evaluated). The wall time of each command is kept in
runs/arith/times.json; the tables replace the blocks between
`<!-- BEGIN name -->` and `<!-- END name -->` in experiments/arith_results.md.
"""

import collections
import json
import math
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, 'runs', 'arith')
RESULTS = os.path.join(ROOT, 'experiments', 'arith_results.md')
TIMES = os.path.join(RUNS, 'times.json')

BABYLLM = {  # workdir name -> config
    'babyllm_sweep': 'configs/babyllm.py:sweep',
    'babyllm_prefix_sweep': 'configs/babyllm.py:prefix,sweep',
}
GRID = {'babyllm_grid': 'configs/babyllm.py:grid'}
ADDY = {
    'addy': ('configs/addy.py',),
    'addy_original': ('configs/addy.py:original',),
    'addy_sweep': ('configs/addy.py:sweep',),  # 4 seeds of the default
}
# What makes the default faster, at 3000 steps and constant lr: the default
# model and optimizer; the original's small model with our optimizer; our model
# with the original's optimizer.
_SMALL = ['--config.model.d_model=16', '--config.model.d_mlp=64',
          '--config.model.positions=sinusoidal', '--config.model.embed_scale=True',
          '--config.model.norm=standardize', '--config.model.norm_eps=2.2e-16']
ABLATIONS = {
    'abl_wide_adam': ('configs/addy.py', '--config.train.steps=3000',
                      '--config.optimizer.schedule=constant'),
    'abl_small_adam': ('configs/addy.py', '--config.train.steps=3000',
                       '--config.optimizer.schedule=constant', *_SMALL),
    'abl_wide_sgd': ('configs/addy.py', '--config.train.steps=3000',
                     '--config.optimizer.name=sgd', '--config.optimizer.lr=0.003',
                     '--config.optimizer.schedule=constant',
                     '--config.optimizer.warmup_steps=0', '--config.optimizer.grad_clip=0.0'),
}


def run(name, config, *flags):
  """`python -m tinyjax.run` into runs/arith/<name>; records its wall time.

  A run that finished before (marker file <name>.done) is not run again, so
  its recorded time stays that of the training."""
  os.makedirs(RUNS, exist_ok=True)
  done = os.path.join(RUNS, name + '.done')
  if os.path.exists(done):
    print(f'{name}: done before, not rerun', flush=True)
    return
  cmd = [sys.executable, '-m', 'tinyjax.run', '--config', config,
         '--workdir', os.path.join(RUNS, name), '--noprogress', *flags]
  print('$', ' '.join(cmd[1:]), flush=True)
  t = time.time()
  subprocess.run(cmd, cwd=ROOT, check=True, env=dict(os.environ, PYTHONPATH=ROOT))
  times = json.load(open(TIMES)) if os.path.exists(TIMES) else {}
  times[name] = round(time.time() - t)
  json.dump(times, open(TIMES, 'w'), indent=1)
  open(done, 'w').close()


def summary(name):
  path = os.path.join(RUNS, name, 'summary.json')
  return json.load(open(path))['runs'] if os.path.exists(path) else None


def wilson(k, n, z=1.96):
  """95% Wilson interval of a binomial rate."""
  if not n:
    return (math.nan, math.nan)
  p = k / n
  mid = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return max(0.0, mid - half), min(1.0, mid + half)


def wall(name):
  times = json.load(open(TIMES)) if os.path.exists(TIMES) else {}
  return f'{times[name] / 60:.1f} min' if name in times else '?'


# ----------------------------------------------------------------- babyLLM ---
def babyllm_rows(runs):
  """Per group of runs that differ only in seed: (group, n, right, answers,
  ever right after step 0, at best train fit, median held-out digit CE)."""
  groups = collections.defaultdict(list)
  for r in runs:  # names like 'hidden_dim=16/lr=0.1/seed=3': group all but seed
    groups[r['name'].rpartition('seed=')[0].rstrip('/')].append(r)
  out = []
  for key, rs in groups.items():
    answers = collections.Counter(r['generations']['4+4='] for r in rs)
    right = sum(r['generation_correct']['4+4='] for r in rs)
    ever = sum((r['heldout_correct_step'] or 0) > 0 for r in rs)
    fit = sum(r['train_fit_step'] is not None for r in rs)
    loss = sorted(r['final']['heldout/loss/digit'] for r in rs)
    out.append((key, len(rs), right, answers, ever, fit, loss[len(loss) // 2]))
  return out


def babyllm_table(names):
  lines = ['| run | seeds | 4+4= -> 8 at the end | rate (95% CI) | answers after `4+4=` | '
           'right at any eval after step 0 | at best train fit | '
           'median held-out CE of the digit | wall (whole sweep) |',
           '|---|---|---|---|---|---|---|---|---|']
  for name in names:
    runs = summary(name)
    if runs is None:
      continue
    for i, (key, n, right, answers, ever, fit, loss) in enumerate(babyllm_rows(runs)):
      lo, hi = wilson(right, n)
      ans = ', '.join(f'{a!r}: {c}' for a, c in answers.most_common())
      lines.append(f'| {name}{" " + key if key else ""} | {n} | {right} | '
                   f'{right / n:.2f} ({lo:.2f}-{hi:.2f}) | {ans} | {ever} | {fit}/{n} | '
                   f'{loss:.2f} | {"" if i else wall(name)} |')
  return '\n'.join(lines)


# -------------------------------------------------------------------- addy ---
def bucket_sizes(config_arg):
  """Prompts per bucket, from the task the config builds."""
  sys.path.insert(0, ROOT)
  from experiments.time_steps import load
  from tinyjax import tasks
  task = tasks.build(load(os.path.join(ROOT, config_arg)).task)
  return {k: len(v) for k, v in task.prompt_buckets.items()}


def addy_table(names):
  lines = ['| run | steps | final val loss | exact 1digit | exact 2digit | exact 3digit | '
           'first eval with 3digit >= 90% | wall |', '|---|---|---|---|---|---|---|---|']
  for name, (config, *_) in names.items():
    runs = summary(name)
    if runs is None:
      continue
    sizes = bucket_sizes(config)
    for r in runs:
      f = r['final']
      cells = []
      for b in ('1digit', '2digit', '3digit'):
        k = round(f[f'exact/{b}'] * sizes[b])
        cells.append(f'{k}/{sizes[b]} ({f[f"exact/{b}"]:.1%})')
      first = r.get('exact_3digit_90_step')
      lines.append(f'| {name} {r["name"]} | {f["step"]} | {f["val/loss"]:.4f} | '
                   + ' | '.join(cells) + f' | {first if first is not None else "never"} | '
                   f'{wall(name)} |')
  return '\n'.join(lines)


def write_block(tag, text):
  doc = open(RESULTS).read()
  pattern = re.compile(f'<!-- BEGIN {tag} -->.*?<!-- END {tag} -->', re.S)
  if not pattern.search(doc):
    raise SystemExit(f'{RESULTS}: no <!-- BEGIN {tag} --> block')
  doc = pattern.sub(lambda _: f'<!-- BEGIN {tag} -->\n{text}\n<!-- END {tag} -->', doc)
  open(RESULTS, 'w').write(doc)
  print(text)


def main(what):
  if what == 'babyllm':
    for name, config in BABYLLM.items():
      run(name, config)
  elif what == 'grid':
    for name, config in GRID.items():
      run(name, config)
  elif what == 'addy':
    for name, args in ADDY.items():
      run(name, *args)
  elif what == 'ablations':
    for name, args in ABLATIONS.items():
      run(name, *args)
  elif what != 'tables':
    raise SystemExit(__doc__)
  write_block('babyllm', babyllm_table(list(BABYLLM)))
  write_block('babyllm-grid', babyllm_table(list(GRID)))
  write_block('addy', addy_table({**ADDY, **ABLATIONS}))


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else '')
