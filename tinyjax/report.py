"""What a finished run or sweep prints, and the sweep report (report.md, sweep.png)."""

from __future__ import annotations


def _fmt(v):
  return 'never' if v is None else str(v)


def brief(summary: dict) -> str:
  runs = summary['runs']
  if len(runs) == 1:
    r = runs[0]
    lines = [f"run {r['name']}: {r['num_params']:,} parameters, step {r['final']['step']}, "
             f"loss {r['final']['loss']:.4f}" + (' (diverged at step '
                                                  f"{r['diverged_step']})" if r['diverged'] else '')]
    for k, v in r.items():
      if k.endswith('_step') and k != 'diverged_step':
        lines.append(f'  {k}: {_fmt(v)}')
    for k, v in r['final'].items():  # bucketed exact match (task.prompt_buckets)
      if k.startswith('exact/') and v is not None:
        lines.append(f'  {k}: {v:.3f}')
    for p, text in r['generations'].items():
      mark = ''
      if 'generation_correct' in r:
        mark = '  (expected)' if r['generation_correct'][p] else '  (not the expected)'
      lines.append(f'  generate {p!r} -> {text!r}{mark}')
    return '\n'.join(lines)
  return f'{len(runs)} runs; see report.md'


def write(workdir: str, summary: dict, config) -> None:
  pass
