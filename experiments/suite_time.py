"""The test suite's time, cold: python experiments/suite_time.py --label NAME

Runs `python -m pytest -q -n WORKERS --durations=0` as CI does (a fresh
JAX compilation cache, so every program is compiled: CI starts from an empty
one) and stores, under NAME in experiments/results/suite_time.json: the wall
seconds, the CPU seconds of the whole process tree (user + sys of pytest, its
workers and the CLI processes they start: the figure that load beside the run
changes least), the load average before and after (a figure measured under
load says so), the pass/fail line, and the seconds per test file summed from
--durations (setup + call + teardown of each test, as the workers ran them).

--files F...: those test files only (with --workers 0: one process, for a
per-file A/B). --from_log LOG --command CMD records a run made by hand
instead, from its output with `/usr/bin/time -f "%e s wall %U user %S sys"`
around CMD (the before/after figures of the suite's speed-up were measured so).

On an idle machine (the figure the README quotes):
  python experiments/suite_time.py --label idle
"""

import argparse
import collections
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'experiments', 'results', 'suite_time.json')
DURATION = re.compile(r'^\s*([\d.]+)s (setup|call|teardown)\s+(\S+?)::')
TIME = re.compile(r'([\d.]+) s wall ([\d.]+) user ([\d.]+) sys')


def per_file(log: str) -> dict:
  """{test file: seconds} summed over the --durations lines of a pytest log."""
  out = collections.Counter()
  for line in log.splitlines():
    m = DURATION.match(line)
    if m:
      out[m.group(3)] += float(m.group(1))
  return {k: round(v, 1) for k, v in out.most_common()}


def summary_line(log: str) -> str:
  lines = [l.strip('= ') for l in log.splitlines() if re.search(r'\d+ (passed|failed)', l)]
  return lines[-1] if lines else ''


def run(workers: int, files: list) -> dict:
  cache = tempfile.mkdtemp(prefix='tinyjax-suite-cold-')
  env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_COMPILATION_CACHE_DIR=cache)
  load0, before = os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
  t = time.perf_counter()
  p = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rf', '-n', str(workers),
                      '--durations=0', *files], cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  log = p.stdout + p.stderr
  return {'wall_seconds': round(wall, 1),
          'user_seconds': round(after.ru_utime - before.ru_utime, 1),
          'sys_seconds': round(after.ru_stime - before.ru_stime, 1),
          'load_average_before': [round(x, 2) for x in load0],
          'load_average_after': [round(x, 2) for x in os.getloadavg()],
          'returncode': p.returncode, 'result': summary_line(log),
          'failed': [l.split(' - ')[0][len('FAILED '):] for l in log.splitlines()
                     if l.startswith('FAILED ')],
          'files': per_file(log)}


def from_log(path: str) -> dict:
  log = open(path).read()
  wall, user, sys_ = (float(x) for x in TIME.findall(log)[-1])
  return {'wall_seconds': wall, 'user_seconds': user, 'sys_seconds': sys_,
          'result': summary_line(log), 'files_from_durations': per_file(log),
          'measured_by': '/usr/bin/time -f "%e s wall %U user %S sys" around the command (its log)'}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--label', required=True, help='the record\'s name in the results file')
  ap.add_argument('--workers', type=int, default=2)
  ap.add_argument('--note', default='', help='what else ran on the machine, etc.')
  ap.add_argument('--from_log', default='', help='record this log instead of running')
  ap.add_argument('--files', nargs='*', default=[], help='these test files only (else all)')
  ap.add_argument('--command', default='', help='with --from_log: the command that was timed')
  ap.add_argument('--commit', default='', help='with --from_log: the commit that ran')
  ap.add_argument('--out', default=OUT)
  a = ap.parse_args()
  rec = from_log(a.from_log) if a.from_log else run(a.workers, a.files)
  rec['command'] = a.command or ('python -m pytest -q -n %d --durations=0 %s' % (
      a.workers, ' '.join(a.files))).strip()
  rec['cpu_seconds'] = round(rec['user_seconds'] + rec['sys_seconds'], 1)
  rec.update(date=time.strftime('%Y-%m-%d %H:%M'), cores=os.cpu_count(), workers=a.workers,
             cache='cold (a fresh JAX_COMPILATION_CACHE_DIR)', note=a.note,
             commit=a.commit or subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT,
                                   capture_output=True, text=True).stdout.strip())
  results = json.load(open(a.out)) if os.path.exists(a.out) else {}
  results[a.label] = rec
  with open(a.out, 'w') as f:
    json.dump(results, f, indent=2)
  print(json.dumps({k: v for k, v in rec.items() if not k.startswith('files')}, indent=2))


if __name__ == '__main__':
  main()
