"""Expands a config's `sweep` section into groups of runs.

Axes that only change traced values (seed, learning rate, weight decay, ...; see
`program.TRACED`) become the `runs` axis of one compiled program. Any other
axis changes array shapes or the program itself (width, depth, task size), so
each of its values is a separate group, compiled and run one after another.

Run names are the swept values, e.g. `lr=0.1/seed=3` (a single run: `seed=0`);
they are also the run directories under the workdir.
"""

from __future__ import annotations

import dataclasses
import itertools

from tinyjax import program
from tinyjax.tasks import ConfigError


@dataclasses.dataclass
class Group:
  name: str                 # '' or e.g. 'd_model=32' (directory prefix)
  config: object            # the config with this group's static values set
  runs: list[dict]          # [{'name', 'hparams': {hp name: value}, 'swept': {...}}]

  @property
  def rel_names(self) -> list[str]:
    """Run names within the group's directory ('lr=0.1/seed=3')."""
    return [r['name'][len(self.name) + 1:] if self.name else r['name'] for r in self.runs]


def _grid_axes(node, prefix=''):
  """Flattens the nested sweep.grid into [(dotted path, values)]."""
  out = []
  for key, value in node.items():
    path = f'{prefix}{key}'
    if hasattr(value, 'items'):
      out += _grid_axes(value, path + '.')
    else:
      if not isinstance(value, (tuple, list)) or not value:
        raise ConfigError(f'sweep.grid.{path}: {value!r} is not allowed; give a '
                          'non-empty tuple of values')
      out.append((path, tuple(value)))
  return out


def _short(path: str) -> str:
  return {'optimizer.lr': 'lr'}.get(path, path.split('.')[-1])


def _fmt(v) -> str:
  return f'{v:g}' if isinstance(v, float) else str(v)


def _field(config, path):
  """(parent node, leaf name) of a dotted path; ConfigError if it is not a field."""
  node, parts = config, path.split('.')
  if parts[0] in ('sweep', 'seed'):
    raise ConfigError(f'sweep.grid.{path}: not sweepable here; use sweep.seeds for seeds')
  for p in parts[:-1]:
    if p not in node or not hasattr(node[p], 'items'):
      raise ConfigError(f'sweep.grid.{path}: no such config field')
    node = node[p]
  if parts[-1] not in node or hasattr(node[parts[-1]], 'items'):
    raise ConfigError(f'sweep.grid.{path}: no such config field')
  return node, parts[-1]


def _check_values(config, path, values):
  """Each value must have the field's type: a number for a number, etc."""
  node, leaf = _field(config, path)
  old = node[leaf]
  numeric = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
  for v in values:
    ok = (numeric(v) and (isinstance(v, int) or isinstance(old, float))) if numeric(old) \
        else isinstance(v, type(old))
    if not ok:
      raise ConfigError(f'sweep.grid.{path}: value {v!r} does not fit the field '
                        f'(a {type(old).__name__}, now {old!r})')


def _set(config, path, value):
  node, leaf = _field(config, path)
  node[leaf] = float(value) if isinstance(node[leaf], float) else value


def axes(config) -> list[tuple[str, tuple]]:
  s = config.sweep
  if s.seeds < 0:
    raise ConfigError(f'sweep.seeds: {s.seeds} is not allowed; use 0 (off) or N > 0')
  out = _grid_axes(s.grid)
  for path, values in out:
    _check_values(config, path, values)
  if len(s.lrs):
    out.append(('optimizer.lr', tuple(float(x) for x in s.lrs)))
  out.append(('seed', tuple(range(s.seeds)) if s.seeds else (config.seed,)))
  return out


def expand(config) -> list[Group]:
  all_axes = axes(config)
  static = [(p, v) for p, v in all_axes if p not in program.TRACED]
  traced = [(p, v) for p, v in all_axes if p in program.TRACED]
  declared = program.base_hparams(config)
  for path, _ in traced:  # traced axes never go through _set: check them here
    if program.TRACED[path] not in declared:
      raise ConfigError(f'sweep.grid.{path}: no such config field')
  groups = []
  for static_values in itertools.product(*[v for _, v in static]):
    cfg = config.copy_and_resolve_references()
    with cfg.unlocked():
      for (path, _), value in zip(static, static_values):
        _set(cfg, path, value)
    gname = '/'.join(f'{_short(p)}={_fmt(v)}' for (p, _), v in zip(static, static_values))
    base = program.base_hparams(cfg)
    runs = []
    for values in itertools.product(*[v for _, v in traced]):
      hp = dict(base)
      swept = {}
      for (path, _), value in zip(traced, values):
        hp[program.TRACED[path]] = value
        swept[_short(path)] = value
      name = '/'.join(f'{k}={_fmt(v)}' for k, v in swept.items())
      runs.append({'name': f'{gname}/{name}' if gname else name, 'hparams': hp,
                   'swept': {**{_short(p): v for (p, _), v in zip(static, static_values)},
                             **swept}})
    groups.append(Group(name=gname, config=cfg, runs=runs))
  return groups
