"""What the cheap lenses cost: whole-process wall time of the default Timmy run
with the step lenses on (the config's default) and all off, alternated.

  python experiments/lens_overhead.py [--repeats 3] [--config configs/timmy.py] \
      [--out experiments/results/lens_overhead.json]

Prints each time, the medians and their ratio (goal: <= 1.2); with --out also
writes them, with the date and the machine's load average before and after
(a ratio measured under load says so).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

OFF = ['--config.lenses.attention=False', '--config.lenses.probe=False',
       '--config.lenses.copying=False', '--config.lenses.geometry=False',
       '--config.lenses.icl=False']


def once(config: str, extra: list[str]) -> float:
  with tempfile.TemporaryDirectory() as w:
    t = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'tinyjax.run', '--config', config, '--workdir', w,
                    '--noprogress', *extra], check=True, capture_output=True)
    return time.perf_counter() - t


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--config', default='configs/timmy.py')
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--out', default=None, help='Also write the figures to this JSON file.')
  a = ap.parse_args()
  load_before = os.getloadavg()
  on, off = [], []
  for _ in range(a.repeats):
    off.append(once(a.config, OFF))
    on.append(once(a.config, []))
    print(f'off {off[-1]:.1f} s, on {on[-1]:.1f} s', flush=True)
  print(f'median: off {statistics.median(off):.1f} s, on {statistics.median(on):.1f} s, '
        f'ratio {statistics.median(on) / statistics.median(off):.3f}')
  if a.out:
    with open(a.out, 'w') as f:
      json.dump({'date': time.strftime('%Y-%m-%d'), 'config': a.config, 'repeats': a.repeats,
                 'cpu_count': os.cpu_count(), 'loadavg_before': load_before,
                 'loadavg_after': os.getloadavg(), 'on_s': [round(x, 1) for x in on],
                 'off_s': [round(x, 1) for x in off],
                 'median_on_s': round(statistics.median(on), 1),
                 'median_off_s': round(statistics.median(off), 1),
                 'ratio': round(statistics.median(on) / statistics.median(off), 3)}, f, indent=2)


if __name__ == '__main__':
  main()
