"""What Python's garbage collector costs a Timmy job, with and without
train_and_evaluate's freeze of the objects older than the job (train.gc_frozen).

  python experiments/gc_cost.py --case 64x300 --repeats 3 --out experiments/results/gc_cost.json

Each job runs in a fresh process (the collector's work depends on the whole
heap: what was imported, what ran before), the two variants alternated; the
compilation cache is off, so every job traces and compiles. Per job: wall
seconds of train_and_evaluate, the full (generation 2) collections' count and
seconds (timed by gc.callbacks), the seconds of all collections, and when
the first chunk landed (its rows fetched: the first step's wait).
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # after PYTHONPATH


def one(case: str, freeze: bool, workdir: str) -> dict:
  """One job in this process."""
  import contextlib
  import gc
  import threading
  from configs import timmy
  from tinyjax import loop, train
  runs, steps = (int(x) for x in case.split('x'))
  cfg = timmy.get_config()
  with cfg.unlocked():
    cfg.sweep.seeds, cfg.train.steps = runs, steps
  if not freeze:
    train.gc_frozen = contextlib.nullcontext
  started, spans = {}, []

  def timed(phase, info):
    key = threading.get_ident()
    if phase == 'start':
      started[key] = time.perf_counter()
    elif key in started:
      spans.append((info['generation'], time.perf_counter() - started.pop(key)))
  gc.callbacks.append(timed)
  first = []
  land = loop.Chunks.land

  def timed_land(self, *a):
    out = land(self, *a)
    if not first:
      first.append(time.perf_counter())
    return out
  loop.Chunks.land = timed_land
  t = time.perf_counter()
  train.train_and_evaluate(cfg, workdir, overwrite=True, progress=False)
  wall = time.perf_counter() - t
  full = [s for g, s in spans if g == 2]
  return {'freeze': freeze, 'seconds': round(wall, 2), 'first_chunk_landed': round(first[0] - t, 2),
          'full_collections': len(full), 'full_collection_seconds': round(sum(full), 3),
          'all_collection_seconds': round(sum(s for _, s in spans), 3)}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--case', default='64x300', help='RUNSxSTEPS of the default Timmy config.')
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--out', default='gc_cost.json')
  p.add_argument('--one', choices=['freeze', 'nofreeze'], help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.one:
    import tempfile
    from tinyjax import cli
    cli.set_cpu_devices(0)
    with tempfile.TemporaryDirectory() as root:
      print(json.dumps(one(args.case, args.one == 'freeze', os.path.join(root, 'w'))))
    return
  env = {**os.environ, 'TINYJAX_COMPILATION_CACHE': 'off'}
  jobs = []
  for _ in range(args.repeats):
    for variant in ('nofreeze', 'freeze'):
      out = subprocess.run([sys.executable, os.path.abspath(__file__), '--case', args.case,
                            '--one', variant], env=env, capture_output=True, text=True, check=True)
      jobs.append(json.loads(out.stdout.strip().splitlines()[-1]))
      print(jobs[-1], flush=True)
  result = {'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'case': args.case,
            'cpu_count': os.cpu_count(), 'jobs': jobs}
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)
  print('wrote', args.out)


if __name__ == '__main__':
  main()
