"""Where a wide, short sweep's time goes: the whole process vs end-of-run generation.

  python experiments/generation_cost.py [--seeds 1024] [--steps 20] [--workdir DIR] \
      [--out experiments/results/generation_cost.json]

Trains configs/timmy.py with `--seeds` seeds for `--steps` steps through
train.train_and_evaluate (what tinyjax.run does, CPU devices one per core) and
times Program.generations, the end-of-run decoding of every prompt of every
run (untrained models never emit EOS, so each prompt runs to max_new_tokens).
Prints one JSON line (with --out also writes it, with the date and the load
average before and after). Run from any checkout: it imports the tinyjax beside it.
"""

import argparse
import json
import os
import sys
import tempfile
import time

T0 = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--seeds', type=int, default=1024)
  ap.add_argument('--steps', type=int, default=20)
  ap.add_argument('--workdir', default=None)
  ap.add_argument('--out', default=None, help='Also write the JSON line to this file.')
  a = ap.parse_args()
  load_before = os.getloadavg()
  from tinyjax import cli
  cli.set_cpu_devices(0)
  from configs import timmy
  from tinyjax import program
  from tinyjax import train
  spent = []
  original = program.Program.generations

  def timed(self, *args, **kw):
    t = time.perf_counter()
    out = original(self, *args, **kw)
    spent.append(time.perf_counter() - t)
    return out

  program.Program.generations = timed
  c = timmy.get_config()
  with c.unlocked():
    c.sweep.seeds, c.train.steps = a.seeds, a.steps
  workdir = a.workdir or tempfile.mkdtemp()
  t = time.perf_counter()
  train.train_and_evaluate(c, os.path.join(workdir, 'w'), overwrite=True, progress=False)
  total = time.perf_counter() - T0
  out = {'seeds': a.seeds, 'steps': a.steps, 'process_s': round(total, 1),
         'train_and_evaluate_s': round(time.perf_counter() - t, 1),
         'generation_s': round(sum(spent), 1),
         'generation_share': round(sum(spent) / total, 3)}
  print(json.dumps(out))
  if a.out:
    with open(a.out, 'w') as f:
      json.dump({'date': time.strftime('%Y-%m-%d'), 'cpu_count': os.cpu_count(),
                 'loadavg_before': load_before, 'loadavg_after': os.getloadavg(), **out},
                f, indent=2)


if __name__ == '__main__':
  main()
