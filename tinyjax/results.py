"""A workdir's results as one table, for notebooks.

  from tinyjax import results
  df, summary = results.load('runs/timmy_sweep')
  df.groupby(['lr', 'step'])['loss'].median().unstack(0).plot(logy=True)
  lens, _ = results.load('runs/induction', 'lenses')     # checkpoint lenses
  df, _ = results.load('runs/big', metrics=['loss', 'loss/content'])  # fewer columns

One row per (run, logged step): `run` (its name), one column per swept value
(e.g. `lr`, `seed`), `step`, then every metric (NaN where a row has none,
e.g. eval metrics between evals). A metric named like a swept value is
renamed `<name>_logged` (the logged `lr`, the schedule's value at that step,
beside the swept `lr`). `summary` is summary.json as a dict.

It reads the columnar files every group writes (GROUP/metrics/*.npz, one per
chunk: tinyjax.writer), so a 1,024-run sweep loads in about a second; a workdir
written before them is read from the runs' metrics.jsonl files.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tinyjax import writer
from tinyjax.tasks import ConfigError


def load(workdir: str, kind: str = 'metrics', metrics: list[str] | None = None,
         summary: dict | None = None):
  """(pandas.DataFrame, summary dict) of a trained workdir; kind 'metrics'
  (the training rows) or 'lenses' (the checkpoint lenses' rows); only the
  named `metrics` if given (faster); `summary` instead of summary.json."""
  import pandas as pd
  kind = kind.removesuffix('.jsonl')
  if kind not in writer.Columns.KINDS:
    raise ConfigError(f'kind: {kind!r} is not allowed; use one of {writer.Columns.KINDS}')
  path = os.path.join(workdir, 'summary.json')
  if summary is None:
    if not os.path.exists(path):
      raise ConfigError(f'{workdir}: no summary.json; is it a finished tinyjax workdir?')
    with open(path) as f:
      summary = json.load(f)
  groups: dict[str, list[dict]] = {}
  for run in summary['runs']:
    groups.setdefault(run.get('group', ''), []).append(run)
  frames = []
  for name, runs in groups.items():
    group_dir = os.path.join(workdir, name)
    if 'index' in runs[0] and os.path.isdir(os.path.join(group_dir, kind)):
      frames.append(_group_frame(group_dir, kind, runs, metrics))
    else:
      frames += _jsonl_frames(workdir, kind, runs, metrics)
  frames = [f for f in frames if len(f)]
  if not frames:
    return pd.DataFrame(columns=['run', 'step']), summary
  return pd.concat(frames, ignore_index=True), summary


def _group_frame(group_dir, kind, runs, metrics):
  """One group's columnar files as a table, ordered by run then step."""
  import pandas as pd
  by_index = {r['index']: r for r in runs}
  parts = []
  for steps_G, runs_R, cols in writer.read_columns(group_dir, kind):
    n = len(steps_G) * len(runs_R)
    part = {'__run__': np.tile(runs_R, len(steps_G)), 'step': np.repeat(steps_G, len(runs_R))}
    part.update({k: v.reshape(n).astype(np.float64) for k, v in cols.items()
                 if metrics is None or k in metrics})
    parts.append(pd.DataFrame(part))
  if not parts:
    return pd.DataFrame()
  df = pd.concat(parts, ignore_index=True)
  df = df[df['__run__'].isin(list(by_index))]
  df = df.sort_values(['__run__', 'step'], kind='stable', ignore_index=True)
  idx = df.pop('__run__').to_numpy()
  swept = list(runs[0]['swept'])
  df = df.rename(columns={k: f'{k}_logged' for k in swept if k in df})
  order = sorted(by_index)
  at = np.searchsorted(order, idx)
  lookup = lambda f: np.asarray([f(by_index[i]) for i in order])[at]
  for k in reversed(swept):
    df.insert(0, k, lookup(lambda r: r['swept'][k]))
  df.insert(0, 'run', lookup(lambda r: r['name']))
  return df


def _jsonl_frames(workdir, kind, runs, metrics):
  """A workdir written before the columnar files: each run's jsonl file."""
  import pandas as pd
  frames = []
  for run in runs:
    p = os.path.join(workdir, run['dir'], f'{kind}.jsonl')
    if not os.path.exists(p) or not os.path.getsize(p):
      continue
    df = pd.read_json(p, lines=True, dtype=False, convert_dates=False, precise_float=True)
    if metrics is not None:
      df = df[[c for c in df.columns if c == 'step' or c in metrics]]
    df = df.rename(columns={k: f'{k}_logged' for k in run['swept'] if k in df})
    for k, v in reversed(list(run['swept'].items())):
      df.insert(0, k, v)
    df.insert(0, 'run', run['name'])
    frames.append(df)
  return frames


def run_rows(workdir: str, kind: str = 'metrics') -> dict[str, list[dict]]:
  """{run name: its rows as its metrics.jsonl has them}: dicts of 'step' and
  every metric (None where the row has none); for every run, whether or not
  it has per-run files (output.per_run_files)."""
  df, summary = load(workdir, kind)
  out = {r['name']: [] for r in summary['runs']}
  if not len(df):
    return out
  swept = set().union(*(r['swept'] for r in summary['runs']))
  df = df.drop(columns=[c for c in swept if c in df])
  df = df.rename(columns={f'{k}_logged': k for k in swept if f'{k}_logged' in df})
  df = df.astype(object).where(df.notna(), None)
  for name, rows in df.groupby('run', sort=False):
    out[name] = rows.drop(columns='run').to_dict('records')
  return out
