"""tinyjax from Python (notebooks, scripts): load or build a config, train, read
the results, sample; no subprocess. tinyjax.run is this plus flag parsing.

  from tinyjax import api
  config = api.load_config('configs/timmy.py:smoke', {'sweep.seeds': 4})
  result = api.train(config, 'runs/timmy_smoke')
  result.summary['runs'][0]['breakthrough_step']
  result.metrics.groupby('step')['loss'].median()      # tinyjax.results.load
  api.generate('runs/timmy_smoke', ['blue'], run='seed=2')

Importing this module imports neither JAX nor pandas; train and generate do.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os


def load_config(spec: str, overrides: dict | None = None):
  """The ConfigDict of 'path/to/config.py[:arg]' (get_config(arg)), with
  `overrides` {'train.steps': 500, ...} applied and the relative file specs of
  task.name / model.name / lenses.extra made absolute against the file's
  directory (tinyjax.extend). ConfigError if the file cannot be loaded."""
  from tinyjax.tasks import ConfigError
  path, arg = (spec.rsplit(':', 1) + [None])[:2] if ':' in spec else (spec, None)
  if not os.path.isfile(path):
    raise ConfigError(f'--config: {path!r}: no such file')
  module_spec = importlib.util.spec_from_file_location('tinyjax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg is not None else module.get_config()
  except Exception as e:
    raise ConfigError(f'--config: {spec!r} could not be loaded ({type(e).__name__}: '
                      f'{" ".join(str(e).split())[:200]})') from None
  for field, value in (overrides or {}).items():
    *parents, leaf = field.split('.')
    node = config
    for p in parents:
      if p not in node:
        raise ConfigError(f'overrides: {field!r}: no such config field')
      node = node[p]
    if leaf not in node:
      raise ConfigError(f'overrides: {field!r}: no such config field')
    with config.unlocked():
      node[leaf] = value
  return with_config_dir(config, os.path.dirname(os.path.abspath(path)))


def with_config_dir(config, config_dir: str):
  """config with its relative file specs resolved against config_dir."""
  from tinyjax import extend
  return extend.absolute_specs(config, config_dir)


@dataclasses.dataclass
class Result:
  """What train returns: the summary (summary.json) now, the metric rows
  (tinyjax.results.load: one row per run and logged step) when first read."""
  workdir: str
  summary: dict

  @functools.cached_property
  def metrics(self):
    from tinyjax import results
    return results.load(self.workdir, summary=self.summary)[0]

  @functools.cached_property
  def lenses(self):
    """The checkpoint lenses' rows (sharpness, LLC), if the config has any."""
    from tinyjax import results
    return results.load(self.workdir, 'lenses', summary=self.summary)[0]


def train(config, workdir: str, overwrite: bool = False, progress: bool = False,
          config_dir: str | None = None) -> Result:
  """Trains every run of `config` into `workdir` (resumed if it holds the
  same config), as `python -m tinyjax.run` does. config_dir: where relative
  'file.py:attr' specs live (default: as given, i.e. the current directory;
  load_config has already resolved them). Raises ConfigError for a mistake
  in the config (nothing written), tinyjax.train.Interrupted on Ctrl-C."""
  from tinyjax import train as train_lib
  if config_dir is not None:
    config = with_config_dir(config, config_dir)
  summary = train_lib.train_and_evaluate(config, workdir, overwrite=overwrite, progress=progress)
  return Result(workdir, summary)


def generate(workdir: str, prompts, **kwargs) -> dict[str, str]:
  """{prompt: completion} of one run of a trained workdir (tinyjax.generate.generate:
  run=, step=, max_new_tokens=, settings=, seed=, constraint=, beam=)."""
  from tinyjax import generate as generate_lib
  return generate_lib.generate(workdir, prompts, **kwargs)
