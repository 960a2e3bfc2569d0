"""Bare mode (`--config.output.minimal=True`) against the sharded plain-JAX
loop, whole jobs, alternated: the bare-mode figure of the cost table without
its other jobs (the full job and each item switched off), so that more
repetitions fit in the same time.

  python experiments/bare_vs_plain.py --cases 1024x300,64x6000 --repeats 3 --out experiments/results/bare_vs_plain.json

Per case RUNSxSTEPS (the default Timmy config, `sweep.seeds` = RUNS): the
bare job (tinyjax.cost.job: train_and_evaluate compiled from scratch, jit's
caches and the persistent compilation cache off) and the plain loop
(tinyjax.cost.plain_job, sharded as tinyjax.bench's), alternated --repeats
times; every job's wall seconds and the cores other processes kept busy
meanwhile (tinyjax.cost.measured); the ratio of the medians.
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--cases', default='1024x300,64x6000', help='RUNSxSTEPS, comma-separated.')
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--out', default='bare_vs_plain.json')
  args = p.parse_args()
  from tinyjax import cli
  cli.set_cpu_devices(0)
  import jax
  import numpy as np
  from tinyjax import bench, cost
  jax.config.update('jax_enable_compilation_cache', False)  # every job compiles
  out = {'devices': [str(d) for d in jax.devices()], 'repeats': args.repeats,
         'loaded_other_cores': cost.LOADED_OTHER_CORES, 'cases': []}
  for case in args.cases.split(','):
    runs, steps = (int(x) for x in case.split('x'))
    cfg = bench.timmy(runs, steps)
    seconds, loads = {'bare': [], 'plain': []}, {'bare': [], 'plain': []}
    with tempfile.TemporaryDirectory() as root:
      jobs = {'bare': lambda: cost.job(cost.with_overrides(cfg, cost.BARE), root),
              'plain': lambda: cost.plain_job(cfg, bench.plain_loop)}
      for _ in range(args.repeats):  # alternated: drift on the machine hits both
        for name, fn in jobs.items():
          r, load = cost.measured(fn)
          seconds[name].append(round(r['seconds'], 2))
          loads[name].append(load)
    r = {'runs': runs, 'steps': steps, 'seconds': seconds, 'load': loads,
         'ratio': round(float(np.median(seconds['bare']) / np.median(seconds['plain'])), 3),
         'under_load': cost.under_load(l for ls in loads.values() for l in ls)}
    out['cases'].append(r)
    print(f"{runs} runs x {steps} steps: bare {seconds['bare']} s, plain {seconds['plain']} s "
          f"-> {r['ratio']}x" + (' UNDER LOAD' if r['under_load'] else ''), flush=True)
  with open(args.out, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
