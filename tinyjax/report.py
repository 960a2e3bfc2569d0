"""What a finished run or sweep prints, and the sweep report (report.md, sweep.png).

The sweep report groups runs by condition (every swept value except the seed)
and, per condition: runs, how many reached the first milestone (Timmy: the
breakthrough), its median / p10 / p90 step, diverged runs, the loss at a few
probe steps, and the held-out generation correct rate.
"""

from __future__ import annotations

import collections
import os

import numpy as np


def _fmt(v):
  return 'never' if v is None else str(v)


def brief(summary: dict) -> str:
  runs = summary['runs']
  if len(runs) != 1:
    return summary.get('report', f'{len(runs)} runs')
  r = runs[0]
  loss = r['final']['loss']  # None: not finite (a diverged run's final row is NaN)
  lines = [f"run {r['name']}: {r['num_params']:,} parameters, step {r['final']['step']}, "
           f"loss {'nan' if loss is None else f'{loss:.4f}'}"
           + (f" (diverged at step {r['diverged_step']})" if r['diverged'] else '')]
  for k, v in r.items():
    if k.endswith('_step') and k != 'diverged_step':
      lines.append(f'  {k}: {_fmt(v)}')
  for k, v in r['final'].items():  # bucketed exact match (task.prompt_buckets)
    if k.startswith('exact/') and v is not None:
      lines.append(f'  {k}: {v:.3f}')
  for p, text in r['generations'].items():
    right = r.get('generation_correct', {}).get(p)
    mark = '' if right is None else '  (expected)' if right else '  (not the expected)'
    lines.append(f'  generate {p!r} -> {text!r}{mark}')
  return '\n'.join(lines)


def condition(run) -> str:
  return ' '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}'
                  for k, v in run['swept'].items() if k != 'seed') or 'all'


def heldout_prompts(config, runs) -> list[str]:
  held = list(config.task.get('held_out', ()) or ())
  prompts = runs[0].get('generation_correct', {})
  return [p for p in held if p in prompts]


def table(summary: dict, config) -> tuple[str, list[str]]:
  """The markdown table per condition and the list of conditions in order."""
  runs = summary['runs']
  milestone = next(iter(config.milestones), None)
  held = heldout_prompts(config, runs)
  probes = [s for s in config.get('report', {}).get('loss_at', ()) if s <= config.train.steps]
  by_cond = collections.OrderedDict()
  for r in runs:
    by_cond.setdefault(condition(r), []).append(r)
  head = ['condition', 'runs', 'diverged']
  if milestone:
    head += [f'reached {milestone}', 'median', 'p10', 'p90']
  head += [f'loss@{s} (min..max)' for s in probes]
  head += [f'{p} correct' for p in held]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for cond, rs in by_cond.items():
    row = [cond, str(len(rs)), str(sum(r['diverged'] for r in rs))]
    if milestone:
      steps = np.asarray([r[milestone] for r in rs if r.get(milestone) is not None])
      row.append(f'{len(steps)}/{len(rs)}')
      row += ([f'{np.percentile(steps, q):.0f}' for q in (50, 10, 90)] if len(steps)
              else ['-'] * 3)
    for s in probes:
      vals = [r['probe'][str(s)] for r in rs if r.get('probe', {}).get(str(s)) is not None]
      row.append(f'{np.median(vals):.4f} ({min(vals):.4f}..{max(vals):.4f})' if vals else '-')
    for p in held:
      row.append(f"{sum(r['generation_correct'][p] for r in rs)}/{len(rs)}")
    lines.append('| ' + ' | '.join(row) + ' |')
  return '\n'.join(lines), list(by_cond)


def add_probes(summary: dict, config, df) -> None:
  """Loss at the config's probe steps (report.loss_at), from the metrics table."""
  probes = set(config.get('report', {}).get('loss_at', ()))
  at = df[df['step'].isin(probes)]
  by_run: dict = {}  # (not a groupby: ~0.1 s at 1,024 runs, even with no probe rows)
  for run, step, loss in zip(at['run'].to_numpy(), at['step'].to_numpy(), at['loss'].to_numpy()):
    by_run.setdefault(run, {})[str(step)] = loss
  for r in summary['runs']:
    r['probe'] = {k: (None if np.isnan(v) else float(v))
                  for k, v in by_run.get(r['name'], {}).items()}


# A condition with more runs than this is drawn as its median and p10-p90
# band plus SAMPLE_LINES single runs (a mean hides how sharp each run's
# breakthrough is), not as one line per run.
BAND_ABOVE, SAMPLE_LINES = 16, 8


def preload() -> None:
  """Imports matplotlib as figure() uses it (~0.6 s) and pandas as
  results.load uses it (~0.3 s), and draws a small figure with text once (its
  font and text-layout setup, ~0.25 s), on tinyjax.loop's side thread while
  the runs train, instead of after them."""
  import io
  import matplotlib
  __import__('pandas')  # results.load's
  matplotlib.use('Agg')
  import matplotlib.pyplot  # noqa: F401  (imported here; figure() uses it)
  from matplotlib.figure import Figure  # not pyplot's figure list: this thread is not the report's
  fig = Figure(figsize=(2, 1))
  ax = fig.add_subplot()
  ax.plot([1, 10], [1, 2])
  ax.set(xscale='log', yscale='log', xlabel='step', title='loss')
  fig.savefig(io.BytesIO(), format='png')


def figure(summary: dict, config, df, conds: list[str], path: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  runs = summary['runs']
  milestone = next(iter(config.milestones), None)
  content = content_metric(config)
  colours = dict(zip(conds, plt.cm.viridis(np.linspace(0, 0.9, max(len(conds), 1)))))
  cond_of = {r['name']: condition(r) for r in runs}
  order = [r['name'] for r in runs]
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
  banded = False
  for cond in conds:
    rows = df[df['run'].map(cond_of) == cond]
    c = colours[cond]
    n = rows['run'].nunique()
    banded |= n > BAND_ABOVE
    for ax, key in ((axes[0], 'loss'), (axes[1], content)):
      if key not in rows:
        continue
      table = rows.pivot(index='step', columns='run', values=key).dropna(how='all')
      table = table[[r for r in order if r in table.columns]]
      x = np.maximum(table.index.to_numpy(float), 1)
      shown = table.columns[:SAMPLE_LINES] if n > BAND_ABOVE else table.columns
      for run in shown:
        ax.plot(x, table[run].to_numpy(float), color=c, alpha=0.35, lw=0.8)
      if n > BAND_ABOVE:
        q = np.nanpercentile(table.to_numpy(float), [10, 50, 90], axis=1)
        ax.fill_between(x, q[0], q[2], color=c, alpha=0.2, lw=0)
        ax.plot(x, q[1], color=c, lw=2)
  for ax, key in ((axes[0], 'loss'), (axes[1], content)):
    positive = any(np.nanmax(np.asarray(l.get_ydata(), float), initial=0) > 0
                   for l in ax.get_lines())
    ax.set(xscale='log', yscale='log' if positive else 'linear', xlabel='step',
           ylabel=key, title=key)
    plain_log_labels(ax)
  if banded:
    fig.suptitle(f'a condition of more than {BAND_ABOVE} runs: its median (thick), p10-p90 '
                 f'(band) and {SAMPLE_LINES} single runs', fontsize=9)
  for cond in conds:
    axes[0].plot([], [], color=colours[cond], label=cond)
  axes[0].legend(fontsize=8)
  if milestone:
    data = [[r[milestone] for r in runs if condition(r) == cond and r.get(milestone) is not None]
            for cond in conds]
    for i, (cond, d) in enumerate(zip(conds, data)):
      jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(d))
      axes[2].scatter(np.full(len(d), i) + jitter, d, color=colours[cond], s=12)
      never = sum(1 for r in runs if condition(r) == cond and r.get(milestone) is None)
      axes[2].annotate(f'never: {never}', (i, 0), xycoords=('data', 'axes fraction'),
                       ha='center', va='bottom', fontsize=8)
    axes[2].set(xticks=range(len(conds)), title=f'{milestone} per run', ylabel='step')
    if not any(data):  # no run reached it: no step axis to read (matplotlib's is -0.05..0.05)
      axes[2].set_yticks([])
    axes[2].set_xticklabels(conds, rotation=20, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plain_log_labels(ax) -> None:
  """Log axes labelled 100, 1000 and 2.1 instead of matplotlib's 10^2 and
  2.1 x 10^0: easier to read, and plain text is laid out without mathtext
  (the report at 64 runs: 0.61 -> 0.50 s). Which ticks carry a label is the
  default's (LogFormatter is the plain-text base of the default formatter)."""
  from matplotlib import ticker
  for axis in (ax.xaxis, ax.yaxis):
    if axis.get_scale() == 'log':
      axis.set_major_formatter(ticker.LogFormatter())
      axis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False))


def content_metric(config) -> str:
  classes = list(config.task.get('classes', {}) or {})
  return f'loss/{classes[0]}' if classes else 'test/loss'


def write(workdir: str, summary: dict, config) -> str:
  """Writes report.md and sweep.png; returns the printed form of the report."""
  from tinyjax import results
  df, _ = results.load(workdir, metrics=['loss', content_metric(config)],
                       summary=summary)
  add_probes(summary, config, df)
  text, conds = table(summary, config)
  figure(summary, config, df, conds, os.path.join(workdir, 'sweep.png'))
  n = len(summary['runs'])
  title = f'# Sweep report: {n} runs\n\n'
  with open(os.path.join(workdir, 'report.md'), 'w') as f:
    f.write(title + text + '\n\n![curves and milestones](sweep.png)\n')
  summary['report'] = f'{n} runs (written to report.md and sweep.png):\n{text}'
  return summary['report']
