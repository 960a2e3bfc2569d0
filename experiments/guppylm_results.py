"""The GuppyLM figures of docs/results/guppylm.md, measured and stored.

  python experiments/guppylm_results.py [--only full1k,cpu,onnx,time] [--runs runs]

Runs, one after the other (each is the command the page prints):
  full1k  python -m tinyjax.run --config configs/guppylm.py --workdir runs/guppylm_full1k
            --config.train.steps=1000 --noprogress
          (the full 8,726,016-parameter model, the first 1,000 of its 10,000 steps;
          19 min 25 s on the 2-core CPU under load, per the page's log)
  cpu     python -m tinyjax.run --config configs/guppylm.py:cpu --workdir runs/guppylm_cpu
            --noprogress  (6 min 49 s under load, per the page's log)
  onnx    python -m tinyjax.export_onnx --workdir runs/guppylm_full1k
            --out runs/guppylm_onnx/guppy.onnx --quantize uint8  (needs
            requirements-export.txt; reads the export's own check, guppy.onnx.check.json)
  time    python experiments/time_steps.py configs/guppylm.py --steps 20 --chunk 20
            --log_every 10  (seconds a step of the full model, compilation excluded)
and writes experiments/results/guppylm.json (every figure, with the command, the
wall and CPU seconds and the load average before and after each part) and
experiments/results/guppylm.md (the page's tables). A stage whose workdir is
already complete is read, not rerun (its time is the one this script stored in the
workdir when it trained it, else "reused": not measured).
The losses do not depend on the machine's load; the wall times do: each part
records the load average, and a time measured with a 1-minute load average above
half the core count (before or after) is labelled "under load" in the .md.
"""

import argparse
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OUT = os.path.join(ROOT, 'experiments', 'results', 'guppylm')
STAGES = ('full1k', 'cpu', 'onnx', 'time')
FULL_STEPS = (0, 200, 400, 600, 800, 1000)
CPU_STEPS = (0, 250, 500, 750, 1000, 1250, 1500)
RECORDED_EVAL = {200: 2.7493, 400: 1.7105, 800: 0.7740, 1000: 0.6078}  # spec section 9


def _cmd(stage, runs):
  py = sys.executable
  return {
      'full1k': [py, '-m', 'tinyjax.run', '--config', 'configs/guppylm.py', '--workdir',
                 f'{runs}/guppylm_full1k', '--config.train.steps=1000', '--noprogress'],
      'cpu': [py, '-m', 'tinyjax.run', '--config', 'configs/guppylm.py:cpu', '--workdir',
              f'{runs}/guppylm_cpu', '--noprogress'],
      'onnx': [py, '-m', 'tinyjax.export_onnx', '--workdir', f'{runs}/guppylm_full1k',
               '--out', f'{runs}/guppylm_onnx/guppy.onnx', '--quantize', 'uint8'],
      'time': [py, 'experiments/time_steps.py', 'configs/guppylm.py', '--steps', '20',
               '--chunk', '20', '--log_every', '10'],
  }[stage]


def _timed(cmd):
  """Runs cmd from the repository root; its output, wall and CPU seconds, loads."""
  load0, t0 = os.getloadavg(), time.perf_counter()
  ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
  r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
  wall, load1 = time.perf_counter() - t0, os.getloadavg()
  if r.returncode != 0:
    sys.exit(f'{" ".join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}')
  cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
  return r.stdout, {'wall_s': round(wall, 1), 'cpu_s': round(cpu, 1),
                    'loadavg_1_5_15_before': [round(x, 2) for x in load0],
                    'loadavg_1_5_15_after': [round(x, 2) for x in load1],
                    'cores': os.cpu_count(), 'date': datetime.date.today().isoformat()}


def _complete(workdir, steps):
  try:
    s = json.load(open(os.path.join(ROOT, workdir, 'summary.json')))
  except (OSError, ValueError):
    return False
  return s['runs'][0]['complete'] and s['runs'][0]['final']['step'] == steps


def _train(stage, runs, steps, keep_steps):
  from tinyjax import results
  workdir = f'{runs}/guppylm_{stage}'
  cmd = _cmd(stage, runs)
  saved = os.path.join(ROOT, workdir, 'guppylm_results_timing.json')
  if not _complete(workdir, steps):
    _, timing = _timed(cmd)
    with open(saved, 'w') as f:  # kept with the workdir: a rerun that reads it keeps the time
      json.dump(timing, f)
  timing = json.load(open(saved)) if os.path.exists(saved) else {'reused': True}
  summary = json.load(open(os.path.join(ROOT, workdir, 'summary.json')))
  (run,) = summary['runs']
  rows = results.run_rows(os.path.join(ROOT, workdir))[run['name']]
  test = {r['step']: {k: r[k] for k in sorted(r) if k.startswith('test/') and r[k] is not None}
          for r in rows if r['step'] in keep_steps}
  return {'command': ' '.join(['python'] + cmd[1:]), 'num_params': run['num_params'],
          'steps': steps, 'test_at': test, 'final': run['final'],
          'generations': run['generations'], **timing}


def _onnx(runs):
  cmd = _cmd('onnx', runs)
  stdout, timing = _timed(cmd)
  report = json.load(open(os.path.join(ROOT, runs, 'guppylm_onnx', 'guppy.onnx.check.json')))
  for kind in ('fp32', 'uint8'):
    report[kind]['MiB'] = round(report[kind]['bytes'] / 2**20, 1)
  return {'command': ' '.join(['python'] + cmd[1:]), 'printed': stdout.strip(), **report,
          **timing}


def _time():
  cmd = _cmd('time', '')
  stdout, timing = _timed(cmd)
  m = re.search(r'([\d.]+) ms/step wall, ([\d.]+) ms/step CPU', stdout)
  return {'command': ' '.join(['python'] + cmd[1:]), 'printed': stdout.strip(),
          's_per_step_wall': round(float(m.group(1)) / 1e3, 3),
          's_per_step_cpu': round(float(m.group(2)) / 1e3, 3), **timing}


def _when(t):
  if t.get('reused'):
    return 'time not measured (workdir reused)'
  load = max(t['loadavg_1_5_15_before'][0], t['loadavg_1_5_15_after'][0])
  tag = 'under load' if load > 0.5 * t['cores'] else 'idle'
  return (f"{t['wall_s']:.0f} s wall, {t['cpu_s']:.0f} s CPU, {tag} (load average "
          f"{t['loadavg_1_5_15_before'][0]} -> {t['loadavg_1_5_15_after'][0]} on "
          f"{t['cores']} cores), {t['date']}")


def markdown(res):
  out = ['# GuppyLM: stored results', '',
         'Written by `python experiments/guppylm_results.py`; every figure of '
         'docs/results/guppylm.md comes from here or from guppylm.json beside it.', '']
  if 'full1k' in res:
    f = res['full1k']
    out += ['## The full model, first 1,000 of 10,000 steps', '', f'`{f["command"]}`', '',
            f'{f["num_params"]:,} parameters; {_when(f)}.', '',
            '| step | ' + ' | '.join(str(s) for s in FULL_STEPS) + ' |',
            '|---|' + '---|' * len(FULL_STEPS),
            '| recorded eval | ' + ' | '.join(f'{RECORDED_EVAL[s]:.4f}' if s in RECORDED_EVAL
                                               else '-' for s in FULL_STEPS) + ' |',
            '| tinyjax test | ' + ' | '.join(f'{f["test_at"][str(s)]["test/loss"]:.4f}'
                                             for s in FULL_STEPS) + ' |', '',
            'Replies at step 1,000 (T 0.7, top-k 50):', '']
    out += [f'- "{p}" -> {json.dumps(g)}' for p, g in f['generations'].items()] + ['']
  if 'cpu' in res:
    c = res['cpu']
    out += ['## `:cpu`', '', f'`{c["command"]}`', '',
            f'{c["num_params"]:,} parameters; {_when(c)}.', '',
            '| step | test loss | user | assistant | special | format |', '|---|---|---|---|---|---|']
    for s in CPU_STEPS:
      r = c['test_at'][str(s)]
      out.append(f'| {s} | {r["test/loss"]:.3f} | ' + ' | '.join(
          f'{r[f"test/loss/{k}"]:.3f}' for k in ('user', 'assistant', 'special', 'format')) + ' |')
    out += ['', 'Replies at step 1,500 (T 0.7, top-k 50):', '']
    out += [f'- "{p}" -> {json.dumps(g)}' for p, g in c['generations'].items()] + ['']
  if 'onnx' in res:
    o = res['onnx']
    out += ['## ONNX export of the step-1,000 model', '', f'`{o["command"]}`', '',
            f'{o["parameters"]:,} parameters, step {o["step"]}, opset {o["opset"]}; {_when(o)}.',
            '', '| model | file | max abs logit diff vs JAX (4 random rows x 128 tokens) | '
            '20-token greedy, 4 prompts |', '|---|---|---|---|']
    for kind in ('fp32', 'uint8'):
      r = o[kind]
      out.append(f'| {kind} | {r["MiB"]} MiB | {r["max_abs_logit_diff"]:.3g} | identical '
                 f'{r["greedy_identical_prompts"]} ({r["greedy_tokens_agreeing"]} tokens) |')
    out.append('')
  if 'time' in res:
    t = res['time']
    out += ['## Seconds a step (full model, compilation excluded)', '', f'`{t["command"]}`', '',
            f'{t["s_per_step_wall"]} s a step wall, {t["s_per_step_cpu"]} s CPU; {_when(t)}.', '']
  return '\n'.join(out)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--only', default=','.join(STAGES), help='comma-separated: ' + ', '.join(STAGES))
  ap.add_argument('--runs', default='runs', help='where the workdirs go (relative to the repo)')
  a = ap.parse_args()
  stages = a.only.split(',')
  assert set(stages) <= set(STAGES), stages
  os.makedirs(os.path.dirname(OUT), exist_ok=True)
  try:  # stages not rerun keep their stored values
    res = json.load(open(OUT + '.json'))
  except (OSError, ValueError):
    res = {}
  for stage in STAGES:
    if stage not in stages:
      continue
    print(f'guppylm_results: {stage} ...', flush=True)
    if stage == 'full1k':
      res[stage] = _train('full1k', a.runs, 1000, FULL_STEPS)
    elif stage == 'cpu':
      res[stage] = _train('cpu', a.runs, 1500, CPU_STEPS)
    elif stage == 'onnx':
      res[stage] = _onnx(a.runs)
    else:
      res[stage] = _time()
    res = json.loads(json.dumps(res))  # step keys as the file holds them (strings)
    with open(OUT + '.json', 'w') as f:
      json.dump(res, f, indent=1)
    with open(OUT + '.md', 'w') as f:
      f.write(markdown(res))
  print(f'wrote {OUT}.json and {OUT}.md')


if __name__ == '__main__':
  main()
