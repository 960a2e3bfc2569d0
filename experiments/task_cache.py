"""What the task cache saves: building a text task fresh, then from the cache.

  python experiments/task_cache.py [--configs guppylm,pillmish,tiny_llm] [--repeats 3]
      [--out experiments/results/task_cache.json]

For each config, in a new process each (as a start of tinyjax.run gets it,
imports not counted), tinyjax.train.build_task(config) is timed three ways,
back to back within each repeat so that load on a shared machine hits them
alike:

  off    TINYJAX_COMPILATION_CACHE=off: no cache (as before the cache)
  miss   an empty cache folder: built, then kept (the first start)
  hit    the same folder again: read back (a rerun)

Per build it records the CPU seconds of the process (user + system of every
thread: HF tokenizers trains and encodes on several), the wall seconds, and
the CPU seconds spent in tinyjax.tasks.cache's key (hashing the files and
the code), load and store. Wall seconds on a shared machine are upper
bounds; compare CPU seconds there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {'tiny_llm': 'configs/tiny_llm.py', 'guppylm': 'configs/guppylm.py',
           'pillmish': 'configs/pillmish.py'}


def child(config_path):
  import resource
  sys.path.insert(0, ROOT)
  from tinyjax import api, compile_cache, train
  from tinyjax.tasks import cache as task_cache
  import tokenizers  # noqa: F401  (imports are not the build's)
  config = api.load_config(os.path.join(ROOT, config_path))
  compile_cache.enable()
  cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
  parts = {'key': 0.0, 'load': 0.0, 'store': 0.0}

  def timed(name):
    real = getattr(task_cache, name)

    def wrapper(*a, **k):
      c0 = cpu()
      out = real(*a, **k)
      parts[name] += cpu() - c0
      return out
    setattr(task_cache, name, wrapper)
  for name in parts:
    timed(name)
  c0, t0 = cpu(), time.perf_counter()
  train.build_task(config)
  print('TASK_CACHE ' + json.dumps({'cpu_s': cpu() - c0, 'wall_s': time.perf_counter() - t0,
                                    **{f'{k}_cpu_s': v for k, v in parts.items()}}), flush=True)


def build(name, cache):
  env = dict(os.environ, JAX_PLATFORMS='cpu', TINYJAX_COMPILATION_CACHE=cache, PYTHONPATH=ROOT)
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', CONFIGS[name]],
                       cwd=ROOT, env=env, capture_output=True, text=True)
  for line in out.stdout.splitlines():
    if line.startswith('TASK_CACHE '):
      return json.loads(line.split(' ', 1)[1])
  raise RuntimeError(f'{name}: no result:\n{out.stderr[-3000:]}')


def _median(xs):
  xs = sorted(xs)
  n = len(xs)
  return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--configs', default='guppylm,pillmish,tiny_llm')
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--out', default=os.path.join(ROOT, 'experiments/results/task_cache.json'))
  ap.add_argument('--child', help=argparse.SUPPRESS)
  a = ap.parse_args()
  if a.child:
    return child(a.child)
  names = a.configs.split(',')
  unknown = [n for n in names if n not in CONFIGS]
  if unknown:
    raise SystemExit(f'--configs: unknown {unknown}; use {", ".join(CONFIGS)}')
  result = {'command': 'python experiments/task_cache.py ' + ' '.join(sys.argv[1:]),
            'machine': {'cpus': os.cpu_count(), 'processor': platform.processor(),
                        'loadavg_start': os.getloadavg()},
            'python': sys.version.split()[0], 'configs': {n: [] for n in names}}
  for r in range(a.repeats):
    for name in names:
      cache = tempfile.mkdtemp(prefix='tinyjax-task-cache-')
      try:
        row = {'off': build(name, 'off'), 'miss': build(name, cache), 'hit': build(name, cache)}
      finally:
        shutil.rmtree(cache, ignore_errors=True)
      result['configs'][name].append(row)
      print(f'{name} repeat {r}: build_task CPU s: off {row["off"]["cpu_s"]:.2f}, '
            f'miss {row["miss"]["cpu_s"]:.2f}, hit {row["hit"]["cpu_s"]:.3f} '
            f'(key {row["hit"]["key_cpu_s"]:.3f}, load {row["hit"]["load_cpu_s"]:.3f})',
            flush=True)
  result['machine']['loadavg_end'] = os.getloadavg()
  result['median_cpu_s'] = {
      n: {**{k: _median([x[k]['cpu_s'] for x in rows]) for k in rows[0]},
          'miss_store': _median([x['miss']['store_cpu_s'] for x in rows]),
          'hit_key': _median([x['hit']['key_cpu_s'] for x in rows]),
          'hit_load': _median([x['hit']['load_cpu_s'] for x in rows])}
      for n, rows in result['configs'].items()}
  os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
  with open(a.out, 'w') as f:
    json.dump(result, f, indent=1)
  print(json.dumps(result['median_cpu_s'], indent=1))
  print(f'wrote {a.out}')


if __name__ == '__main__':
  main()
