"""A workdir's results as one table, for notebooks.

  from tinyjax import results
  df, summary = results.load('runs/timmy_sweep')
  df.groupby(['lr', 'step'])['loss'].median().unstack(0).plot(logy=True)
  lens, _ = results.load('runs/induction', 'lenses.jsonl')   # checkpoint lenses

One row per (run, logged step): `run` (its name), one column per swept value
(e.g. `lr`, `seed`), `step`, then every metric (NaN where a row has none,
e.g. eval metrics between evals). A metric named like a swept value is
renamed `<name>_logged` (the logged `lr`, the schedule's value at that step,
beside the swept `lr`). `summary` is summary.json as a dict.
"""

from __future__ import annotations

import json
import os

from tinyjax.tasks import ConfigError


def load(workdir: str, file: str = 'metrics.jsonl'):
  """(pandas.DataFrame, summary dict) of a trained workdir."""
  import pandas as pd
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    raise ConfigError(f'{workdir}: no summary.json; is it a finished tinyjax workdir?')
  with open(path) as f:
    summary = json.load(f)
  frames = []
  for run in summary['runs']:
    p = os.path.join(workdir, run['dir'], file)
    if not os.path.exists(p) or not os.path.getsize(p):
      continue
    df = pd.read_json(p, lines=True, dtype=False, convert_dates=False, precise_float=True)
    df = df.rename(columns={k: f'{k}_logged' for k in run['swept'] if k in df})
    for k, v in reversed(list(run['swept'].items())):
      df.insert(0, k, v)
    df.insert(0, 'run', run['name'])
    frames.append(df)
  if not frames:
    return pd.DataFrame(columns=['run', 'step']), summary
  return pd.concat(frames, ignore_index=True), summary
