"""Seconds per checkpoint per run of each Lenses II lens at 64 runs (one
vmapped checkpoint-lens program each, compilation excluded, median of
--repeats calls), beside one training step of the same 64 runs.

  python experiments/lenses_ii_cost.py [--runs 64] [--repeats 2]

Timmy (configs/timmy.py, 6,560 parameters, full batch of 5 rows) for the
restricted LLC and the Hessian spectrum; Timmy with Adam for the
preconditioned sharpness (the lens needs Adam's second moment). The settings
timed are those of the :lenses2 study variants. Writes
experiments/results/lenses_ii_cost.json. Timings on a shared machine are
under load: compare them with each other, not with other machines.
"""

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from configs import timmy  # noqa: E402
from tinyjax import program as program_lib  # noqa: E402
from tinyjax import train  # noqa: E402

LENSES = {
    'llc_parts = heads (4 parts; 2 chains x 150 steps each)': dict(
        llc_parts=('heads',), llc_chains=2, llc_draws=100, llc_burnin=50),
    'hessian_lanczos = 20 (4 SLQ vectors, 8 Hutchinson samples)': dict(
        hessian_lanczos=20, hessian_vectors=4, hessian_trace_samples=8),
    'sharpness_precond = 20 (Adam)': dict(sharpness_precond=20),
}


def timed(fn, repeats):
  jax.block_until_ready(fn())
  ts = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    ts.append(time.perf_counter() - t)
  return float(np.median(ts))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--runs', type=int, default=64)
  ap.add_argument('--repeats', type=int, default=2)
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments', 'results'))
  a = ap.parse_args()
  out = {'runs': a.runs, 'devices': [str(d) for d in jax.devices()], 'note':
         'shared 2-core CPU under heavy load (load average ~17): relative, not a benchmark',
         'lenses': {}}
  for name, lens in sorted(LENSES.items(), key=lambda kv: 'sharpness_precond' in kv[1]):
    c = timmy.get_config()
    with c.unlocked():
      c.lenses.update(lens)
      if 'sharpness_precond' in lens:
        c.optimizer.update(name='adam', lr=0.01)
    prog = program_lib.Program(c, train.build_task(c))
    hp = program_lib.hparam_arrays([{**program_lib.base_hparams(c), 'seed': i}
                                    for i in range(a.runs)])
    state = prog.init(hp)
    # One training step first: Adam's state then has a second moment.
    state, _ = prog.chunk(state, hp, prog.data, 0, 1)
    t0 = time.perf_counter()
    f = prog.checkpoint_lenses.lower(state, hp, prog.data, 1).compile()
    compile_s = time.perf_counter() - t0
    s = timed(lambda: f(state, hp, prog.data, 1), a.repeats)
    if 'training_step_seconds_all_runs' not in out:  # one chunk of 1,000 steps, once
      n = c.train.chunk_steps
      out['training_step_seconds_all_runs'] = timed(
          lambda: prog.chunk(state, hp, prog.data, 1, n)[0], 1) / n
    step = out['training_step_seconds_all_runs']
    out['lenses'][name] = {'seconds_per_checkpoint_all_runs': s,
                           'seconds_per_checkpoint_per_run': s / a.runs,
                           'compile_seconds': compile_s,
                           'in_training_steps': s / step}
    print(name, out['lenses'][name], flush=True)
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, 'lenses_ii_cost.json'), 'w') as fh:
    json.dump(out, fh, indent=1)


if __name__ == '__main__':
  main()
