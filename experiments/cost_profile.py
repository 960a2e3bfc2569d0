"""Where one whole job's time goes, host call by host call (tinyjax.cost's
profile of a full job: compilation per program from jax.monitoring, the
timed host calls with the CPU seconds of the thread that made them).

  python experiments/cost_profile.py --runs 64 --steps 6000 --label after --out experiments/results/cost_profile_64x6000.json

The default Timmy config at RUNS x STEPS, compiled from scratch (jit's caches
and the persistent compilation cache off), as `python -m tinyjax.bench
--cost_table` times its full job. Writes one JSON: whole wall and CPU seconds,
the load during the job (tinyjax.bench.measured), compilation per function
and stage, and every profiled host call (wall s, its thread's CPU s, calls).
Run it with PYTHONPATH pointing at another checkout to profile that version
(the `version` field records which tinyjax was imported); each --label is
one entry of the --out file (an existing file keeps its other entries).
"""

import json
import os
import sys
import tempfile
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH

import argparse  # noqa: E402  (not absl flags: tinyjax.bench defines --out too)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--runs', type=int, default=64, help='Runs (sweep.seeds).')
  p.add_argument('--steps', type=int, default=6000, help='Training steps.')
  p.add_argument('--label', default='', help='A label stored in the JSON (before / after).')
  p.add_argument('--out', default='cost_profile.json', help='Where to write the JSON.')
  FLAGS = p.parse_args()
  from tinyjax import cli
  cli.set_cpu_devices(0)
  import jax
  import tinyjax
  from tinyjax import bench
  from tinyjax import cost
  import tensorboardX.crc32c
  jax.config.update('jax_enable_compilation_cache', False)
  cfg = bench.timmy(FLAGS.runs, FLAGS.steps)
  with tempfile.TemporaryDirectory() as root:
    out, load = bench.measured(lambda: cost.job(cfg, root, log_compiles=True))
  rnd = lambda x: round(x, 2)
  result = {
      'label': FLAGS.label, 'date': time.strftime('%Y-%m-%d %H:%M'),
      'version': os.path.dirname(os.path.dirname(os.path.abspath(tinyjax.__file__))),
      'crc32c_native': tensorboardX.crc32c._crc32c_native is not None,
      'runs': FLAGS.runs, 'steps': FLAGS.steps, 'devices': [str(d) for d in jax.devices()],
      'seconds': rnd(out['seconds']), 'cpu_seconds': rnd(out['cpu_seconds']),
      'load': load, 'under_load': cost.under_load([load]),
      'compile_seconds': rnd(out['compile_seconds']),
      'compile': {stage: {f: rnd(s) for f, s in d.items() if s >= 0.05}
                  for stage, d in out['compile'].items()},
      # Seconds from the job's start to the end of each stage (the compile path).
      'compile_done_at': {k: rnd(v) for k, v in sorted(out['compile_done_at'].items(),
                                                       key=lambda kv: kv[1])},
      'profiled': {k: {'seconds': rnd(d['seconds']), 'cpu_seconds': rnd(d['cpu_seconds']),
                       'calls': d['calls'], 'first_done_at': rnd(d['first_done_at'])}
                   for k, d in out['profiled'].items()}}
  stored = {}
  if os.path.exists(FLAGS.out):  # one file, one entry per label (before, after)
    with open(FLAGS.out) as f:
      stored = json.load(f)
  stored[FLAGS.label or 'profile'] = result
  with open(FLAGS.out, 'w') as f:
    json.dump(stored, f, indent=2)
  print(json.dumps({k: result[k] for k in ('label', 'seconds', 'cpu_seconds', 'under_load')}))
  print('  done at (s from the start): ' + ', '.join(
      f'{k} {v}' for k, v in result['compile_done_at'].items()))
  for k, d in result['profiled'].items():
    print(f"  {k}: {d['seconds']} s, {d['cpu_seconds']} CPU s, {d['calls']} calls "
          f"(the first done at {d['first_done_at']} s)")
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  main()
