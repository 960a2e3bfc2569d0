"""What the instrument's items cost while training, compilation left out:
CPU seconds of one 1,000-step chunk of the default Timmy config, per variant.

  python experiments/cost_runtime.py --runs 64 --repeats 3 --out experiments/results/cost_runtime_64.json
  python experiments/cost_runtime.py --runs 1024 --steps 140 --repeats 2 --out experiments/results/cost_runtime_1024.json

(--steps S: a chunk of S steps, S..2S, instead of 1,000.)

Each variant (full; the step lenses off; the evaluation off; bare mode) is
compiled once (ahead, and kept: the plain loop's jax.clear_caches() does not
reach it), then its chunk (steps 1,000-2,000, so that the evaluation's
schedule is the default one) runs --repeats times, the variants alternated;
the CPU seconds (this process, all threads) and wall seconds of each run are
kept, and their medians. The plain-JAX loop's 1,000 steps: the scan of the
sharded plain loop of tinyjax.bench (bench.plain_parts: the same step), compiled
ahead from its initial state and timed in the same alternation (until
2026-12-03 it was the difference of two whole plain jobs, 2,000 steps minus
1,000, which carried their compilation's spread: 64 runs, 1,000 steps, 7.4-10.7
CPU s that way against 11.0 for bare mode's chunk; timed directly, bare mode's
steps came out 1.01-1.05x the plain loop's). An item's runtime cost is full
minus the variant without it.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH


def _cpu():
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--runs', type=int, default=64)
  p.add_argument('--steps', type=int, default=1000,
                 help='Steps of the timed chunk (steps S..2S, the evaluation on its default schedule).')
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--out', default='cost_runtime.json')
  args = p.parse_args()
  from tinyjax import cli
  cli.set_cpu_devices(0)
  import jax
  import numpy as np
  from tinyjax import bench, cost, loop, sweep as sweep_lib, train
  variants = {'full': {}, 'step lenses off': cost.ITEMS['lenses'][1],
              'evaluation off': cost.ITEMS['eval'][1], 'bare mode': cost.BARE}
  progs = {}
  for name, over in variants.items():
    cfg = cost.with_overrides(bench.timmy(args.runs, 6000), over)
    group = sweep_lib.expand(cfg)[0]
    prog = train.program_for(group.config, train.build_task(group.config))
    g = loop.place_group(group, prog, tempfile.mkdtemp())
    # Compiled ahead and kept, like the plain loop's scan below.
    chunk = prog.chunk.lower(g.state, g.hp, g.data, args.steps, args.steps).compile()
    st, _ = jax.block_until_ready(chunk(g.state, g.hp, g.data, args.steps, args.steps))
    progs[name] = (chunk, g, st)
  cfg = bench.timmy(args.runs, 6000)
  init, _, step = bench.plain_parts(cfg)
  carry = jax.jit(jax.vmap(init))(bench.plain_seeds(args.runs, shard=True))
  scan = jax.jit(lambda c: jax.lax.scan(step, c, None, length=args.steps)).lower(carry).compile()
  jax.block_until_ready(scan(carry))
  timed = {name: (lambda chunk=chunk, g=g, st=st: chunk(st, g.hp, g.data, args.steps, args.steps))
           for name, (chunk, g, st) in progs.items()}
  timed['plain JAX loop (sharded)'] = lambda: scan(carry)
  runs = {k: [] for k in timed}
  load = []
  for i in range(args.repeats):  # alternated: drift on the machine hits every variant
    for name, fn in (timed.items() if i % 2 == 0 else reversed(timed.items())):
      t, c = time.perf_counter(), _cpu()
      _, l = bench.measured(lambda: jax.block_until_ready(fn()))
      runs[name].append((time.perf_counter() - t, _cpu() - c))
      load.append(l)
    print({k: [round(x, 2) for x in v[-1]] for k, v in runs.items()}, flush=True)
  med = lambda v, i: round(float(np.median([x[i] for x in v])), 2)
  out = {'runs': args.runs, 'steps_per_chunk': args.steps, 'repeats': args.repeats,
         'devices': [str(d) for d in jax.devices()], 'date': time.strftime('%Y-%m-%d %H:%M'),
         'under_load': cost.under_load(load),
         'load': load,
         'variants': {k: {'cpu_seconds': med(v, 1), 'seconds': med(v, 0),
                          'all_cpu_seconds': [round(x[1], 2) for x in v]} for k, v in runs.items()}}
  full = out['variants']['full']['cpu_seconds']
  out['items_cpu_seconds'] = {k: round(full - out['variants'][k]['cpu_seconds'], 2)
                              for k in ('step lenses off', 'evaluation off', 'bare mode')}
  plain = out['variants']['plain JAX loop (sharded)']['seconds']
  out['seconds_vs_plain'] = {k: round(v['seconds'] / plain, 3) for k, v in out['variants'].items()}
  with open(args.out, 'w') as f:
    json.dump(out, f, indent=2)
  print(json.dumps(out['variants'], indent=1))
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
