"""How long GuppyLM's batches are, and what length buckets would pad them to.

  python experiments/guppy_lengths.py [--steps 2000]

Builds configs/guppylm.py's task (the published tokenizer), draws the
training batches of steps 0..steps-1 exactly as the program does (seed 0's
per-epoch shuffle, 32 rows), and reports each batch's longest row and, per
bucket list, the mean padded length and the share of batches per bucket
(train.bucket_lengths, docs/benchmarks.md). Writes
experiments/results/guppy_lengths.json.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BUCKETS = [(), (40, 48), (36, 42, 48), (32, 36, 40, 44, 48)]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--steps', type=int, default=2000)
  a = ap.parse_args()
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  import jax
  import numpy as np
  from tinyjax import api
  from tinyjax import train
  c = api.load_config(os.path.join(ROOT, 'configs/guppylm.py'))
  with c.unlocked():
    c.task.tokenizer.path = 'tinyjax/data/guppylm_tokenizer.json.xz'
  task = train.build_task(c)
  tr = task.train
  data = jax.device_put(tr.arrays())
  key = jax.random.fold_in(jax.random.key(c.seed), 1)  # as program.Program._batch
  longest = jax.jit(jax.vmap(lambda s: tr.batch(data, key, s, c.train.batch_size)
                             ['valid_NxT'].sum(-1).max()))(np.arange(a.steps))
  longest = np.asarray(longest).astype(int)
  full = tr.seq_len
  out = {'command': 'python experiments/guppy_lengths.py ' + ' '.join(sys.argv[1:]),
         'steps': a.steps, 'rows_padded_to': full,
         'mean_row_length': float(tr.valid_NxT.sum(1).mean()),
         'mean_longest_row_per_batch': float(longest.mean()), 'buckets': []}
  for b in BUCKETS:
    edges = np.asarray(sorted(set(b) | {full}))
    i = np.searchsorted(edges, longest)
    out['buckets'].append({'bucket_lengths': list(b), 'mean_padded': float(edges[i].mean()),
                           'fewer_positions': full / float(edges[i].mean()),
                           'share': {int(e): float((i == k).mean()) for k, e in enumerate(edges)}})
    print(out['buckets'][-1])
  path = os.path.join(ROOT, 'experiments/results/guppy_lengths.json')
  with open(path, 'w') as f:
    json.dump(out, f, indent=1)
  print(f'mean longest row {longest.mean():.1f} of {full}; wrote {path}')


if __name__ == '__main__':
  main()
