"""The instrument's cost per training step, compilation left out.

  python experiments/steady_state.py [--runs 64] [--steps 500] [--repeats 5]
      [--variants full,bare,nolens,noeval] [--out experiments/results/steady_state.json]

The default Timmy config at RUNS runs, one variant per cost.ITEMS switch
(full; bare mode; the step lenses off; the evaluation off; or any
`no_<lens>`), each compiled once in this process as tinyjax.train compiles it
(the same Program, the runs sharded over one CPU device per core), then run
in turn, `--repeats` rounds of one chunk of `--steps` steps each (the first
round is a warm-up and not counted); wall and process CPU ms a step,
medians. What `python -m tinyjax.bench` measures whole (compilation,
checkpoints, files and report included), this measures without them: the
steps alone, so the difference between variants is what an item costs every
step of a long job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def variants():
  from tinyjax import cost
  out = {'full': {}, 'bare': cost.BARE, 'nolens': cost.ITEMS['lenses'][1],
         'noeval': cost.ITEMS['eval'][1]}
  out.update({f'no_{k}': {f'lenses.{k}': False} for k in cost.LENSES})
  return out


def build(runs, steps, overrides):
  import jax
  from tinyjax import bench, cost, loop, program as program_lib, sweep as sweep_lib, train
  cfg = cost.with_overrides(bench.timmy(runs, 10 ** 6), overrides)
  group = sweep_lib.expand(cfg)[0]
  prog = program_lib.Program(group.config, train.build_task(group.config))
  _, _, _, shard, hp, data = loop.place_inputs(group, prog)
  state = jax.device_put(prog.init(hp), shard)  # sharded like the chunk's output
  hp = prog.with_init(hp, state)
  t = time.process_time()
  compiled = prog.chunk.lower(state, hp, data, 0, steps).compile()
  return {'compiled': compiled, 'state': state, 'hp': hp, 'data': data,
          'compile_cpu_s': round(time.process_time() - t, 2)}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--runs', type=int, default=64)
  ap.add_argument('--steps', type=int, default=500)
  ap.add_argument('--repeats', type=int, default=5)
  ap.add_argument('--variants', default='full,bare,nolens,noeval')
  ap.add_argument('--out', default='experiments/results/steady_state.json')
  a = ap.parse_args()
  from tinyjax import cli
  cli.set_cpu_devices(0)
  import jax
  from tinyjax import bench
  names = a.variants.split(',')
  known = variants()
  built = {n: build(a.runs, a.steps, known[n]) for n in names}
  wall = {n: [] for n in names}
  cpu = {n: [] for n in names}
  t_all, own0 = time.perf_counter(), time.process_time()
  busy0 = bench._busy_cpu_seconds()
  for r in range(a.repeats):
    for n in names:
      b = built[n]
      t, c = time.perf_counter(), time.process_time()
      b['state'], rows = b['compiled'](b['state'], b['hp'], b['data'], r * a.steps, a.steps)
      jax.block_until_ready((b['state'], rows))
      if r:  # round 0 warms up
        wall[n].append((time.perf_counter() - t) / a.steps * 1e3)
        cpu[n].append((time.process_time() - c) / a.steps * 1e3)
      print(f'round {r} {n}: {(time.perf_counter() - t) / a.steps * 1e3:.2f} wall ms a step',
            flush=True)
  med = lambda xs: sorted(xs)[len(xs) // 2]
  elapsed, own = time.perf_counter() - t_all, time.process_time() - own0
  busy = bench._busy_cpu_seconds()
  out = {'command': 'python ' + ' '.join(sys.argv), 'date': time.strftime('%Y-%m-%d %H:%M'),
         'runs': a.runs, 'steps_per_chunk': a.steps, 'repeats': a.repeats,
         'jax': jax.__version__, 'cpu_count': os.cpu_count(),
         'loadavg_end': os.getloadavg(),
         # other processes' CPU per wall second while the rounds ran
         'other_cores': (None if busy is None or busy0 is None else
                         round(max(0.0, (busy - busy0 - own) / elapsed), 2)),
         'variants': {n: {'overrides': {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in known[n].items()},
                          'wall_ms_step': round(med(wall[n]), 3),
                          'cpu_ms_step': round(med(cpu[n]), 3),
                          'wall_ms_all': [round(x, 3) for x in wall[n]],
                          'compile_cpu_s': built[n]['compile_cpu_s']} for n in names}}
  with open(a.out, 'w') as f:
    json.dump(out, f, indent=1)
  for n, v in out['variants'].items():
    print(f"{n:12s} {v['wall_ms_step']:7.2f} wall ms a step  {v['cpu_ms_step']:7.2f} CPU ms  "
          f"(chunk compiled in {v['compile_cpu_s']} CPU s)")


if __name__ == '__main__':
  main()
