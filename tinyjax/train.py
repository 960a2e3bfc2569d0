"""train_and_evaluate(config, workdir): every run of a config, start to summary.

  1. expand the config into groups of runs (tinyjax.sweep), build each group's
     task and Program and check them (the task, model and lens contracts by
     shapes, tinyjax.extend; the device memory, tinyjax.memory) before
     anything is written;
  2. prepare the workdir (refuse another experiment's, record the config);
  3. train each group (tinyjax.loop: place, open the writers, run the chunks,
     finish) and write summary.json after each;
  4. join the processes' summaries, write the across-run report.

A fault on any thread (a full disk, a read-only workdir, the device out of
memory) stops the writer and orbax's threads and ends the run with one
tinyjax.faults.Fault naming it and the last intact checkpoint; a sweep that
cannot fit in device memory is refused before anything is compiled
(tinyjax.memory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import signal
import threading

import jax

from tinyjax import checkpoint as ckpt_lib
from tinyjax import compile_cache
from tinyjax import distributed
from tinyjax import extend
from tinyjax import faults
from tinyjax import loop
from tinyjax import memory
from tinyjax import model as model_lib
from tinyjax import program as program_lib
from tinyjax import sweep as sweep_lib
from tinyjax import tasks as tasks_lib
from tinyjax import validate
from tinyjax import writer as writer_lib
from tinyjax.loop import runs_mesh
from tinyjax.tasks import ConfigError


class Interrupted(Exception):
  """SIGINT arrived; the current chunk was finished and checkpointed."""


WriteError = faults.WriteError  # the workdir could not be written (full disk, ...)


@dataclasses.dataclass
class _Sigint:
  """Turns the first Ctrl-C into a flag the loop checks between chunks."""
  hit: bool = False

  def __enter__(self):
    self._old = None
    if threading.current_thread() is threading.main_thread():
      self._old = signal.signal(signal.SIGINT, self._handle)
    return self

  def _handle(self, *_):
    if self.hit:  # second Ctrl-C: stop now
      raise KeyboardInterrupt
    self.hit = True
    print('\ntinyjax: interrupted; finishing the current chunk and checkpointing '
          '(Ctrl-C again to stop at once)', flush=True)

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGINT, self._old)


def prepare_workdir(config, workdir: str, overwrite: bool) -> None:
  """Refuses a workdir that holds a different experiment; records the config."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'--workdir {workdir}: is a file, not a directory; choose another --workdir')
  path = os.path.join(workdir, 'config.json')
  new = json.loads(config.to_json_best_effort(sort_keys=True))
  if os.path.exists(path) and not overwrite:
    with open(path) as f:
      old = json.load(f)
    if _no_bare(old) != _no_bare(new):  # (a workdir from before bare mode has no field)
      diff = sorted(k for k in _flat(old).keys() | _flat(new).keys()
                    if _flat(old).get(k) != _flat(new).get(k))
      raise ConfigError(
          f'--workdir {workdir}: holds a different config (differs in '
          f'{", ".join(diff[:5])}); rerun with the same config to resume, choose '
          'another --workdir, or pass --overwrite to start over')
  if overwrite and os.path.isdir(workdir):
    if os.listdir(workdir) and not os.path.exists(path):
      raise ConfigError(f'--workdir {workdir}: not empty and not a tinyjax workdir (no '
                        'config.json); --overwrite only deletes tinyjax workdirs')
    import shutil
    shutil.rmtree(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--workdir {workdir}: cannot be created ({e.strerror or e}); '
                      'choose another --workdir') from None
  with open(path + '.tmp', 'w') as f:
    json.dump(new, f, indent=2, sort_keys=True)
  os.replace(path + '.tmp', path)


def _no_bare(cfg: dict) -> dict:
  """cfg without output.minimal when it is False (the default)."""
  out = cfg.get('output')
  if isinstance(out, dict) and out.get('minimal') is False:
    return {**cfg, 'output': {k: v for k, v in out.items() if k != 'minimal'}}
  return cfg


def _flat(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def tokenizer_path(workdir: str | None, group_name: str = '') -> str | None:
  """Where a text task's trained tokenizer is saved: WORKDIR/[GROUP/]tokenizer.json."""
  return os.path.join(workdir, group_name, 'tokenizer.json') if workdir else None


def build_task(config, workdir: str | None = None, group_name: str = ''):
  """The task, with `eval.prompts` as its prompts (when the config sets any);
  a text task takes the tokenizer saved in `workdir`, if there is one."""
  task = tasks_lib.build(config.task, tokenizer_path(workdir, group_name))
  if isinstance(task.train, tasks_lib.Stream) and config.train.batch_size < 1:
    raise ConfigError(f'train.batch_size: {config.train.batch_size} is not allowed for '
                      f'task {config.task.name!r}, which draws random windows; use > 0')
  model_lib.validate(config.model, len(task.vocab), task.max_len)
  for p in config.eval.prompts:
    try:
      task.vocab.encode(p)
    except ConfigError as e:
      raise ConfigError(f'eval.prompts: {e}') from None
  if config.eval.prompts:
    task.prompts = tuple(config.eval.prompts)
  return task


def load_config(workdir: str):
  """The config a workdir was trained with (its config.json)."""
  import ml_collections
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise ConfigError(f'--workdir {workdir}: no config.json; is it a tinyjax workdir?')
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


@contextlib.contextmanager
def gc_frozen():
  """Leaves the objects that exist when a job starts (jax, flax and the rest
  imported, the caller's) out of Python's full garbage collections until it
  ends: each full collection walked them all, 0.1-0.46 s at a time with the
  GIL held, four in a 64-run Timmy job, one of them in the chunk's tracing
  before the first step. Reference counting frees objects as before; only
  reference cycles among the frozen objects wait for the job's end. A caller
  that froze its own objects already (a pre-forking server) keeps its freeze."""
  own = gc.get_freeze_count() == 0
  if own:
    gc.freeze()
  try:
    yield
  finally:
    if own:
      gc.unfreeze()


def train_and_evaluate(config, workdir: str, overwrite: bool = False,
                       progress: bool = True) -> dict:
  """Trains every run of `config` into `workdir`; returns the summary dict."""
  with gc_frozen():
    return _train_and_evaluate(config, workdir, overwrite, progress)


def _train_and_evaluate(config, workdir, overwrite, progress) -> dict:
  compile_cache.enable()  # a rerun or resume loads its programs (tinyjax.compile_cache)
  validate.check(config)
  groups = sweep_lib.expand(config)
  # All errors before any write; a resumed text task keeps its saved tokenizer.
  resume = not overwrite and os.path.exists(os.path.join(workdir, 'config.json'))
  tasks = [build_task(g.config, workdir if resume else None, g.name) for g in groups]
  for g, task in zip(groups, tasks):
    check_group(g, program_for(g.config, task))
  main = distributed.is_main()
  group = None
  try:
    if main:
      prepare_workdir(config, workdir, overwrite)
      for g, task in zip(groups, tasks):
        if hasattr(task.vocab, 'save'):
          os.makedirs(os.path.join(workdir, g.name), exist_ok=True)
          task.vocab.save(tokenizer_path(workdir, g.name))
    distributed.barrier('workdir ready')
    summary = {'devices': [str(d) for d in jax.devices()], 'runs': []}
    if jax.process_count() > 1:
      summary['processes'] = jax.process_count()
    # summary.json after every group, so that a fault or Ctrl-C in a later one
    # keeps what finished; after the last one only where no report follows
    # (finish_summary writes it then: ~0.13 s a write at 1,024 runs). Each
    # process of a multi-process job writes its share for the merge.
    reported = (jax.process_count() == 1
                and will_report(config, sum(len(g.runs) for g in groups)))
    with _Sigint() as sigint:
      for k, (group, task) in enumerate(zip(groups, tasks)):
        prog = program_for(group.config, task)
        summary['runs'] += loop.train_group(group, prog, task, workdir, sigint, progress)
        incomplete = sigint.hit and not all(r['complete'] for r in summary['runs'])
        if k < len(groups) - 1 or incomplete or not reported:
          write_summary(workdir, summary)
        if incomplete:
          raise Interrupted(workdir)
    summary = finish_summary(workdir, summary, groups, config)
  except (ConfigError, Interrupted):
    raise
  except Exception as e:
    kept = {g.name or 'runs': _last_intact(workdir, g.name) for g in groups}
    n = len(group.runs) if group is not None else None
    fault = faults.from_exception(e, kept, n and math.ceil(n / runs_mesh(n).devices.size))
    if fault is None:  # a bug: its traceback
      raise
    raise fault from e
  return summary


def check_group(g, prog) -> None:
  """A group's contracts (task, model, lenses; by shapes) and its memory: a
  sweep too big for the device is refused here, before anything is written.
  Both are functions of the program's shapes: a rerun of the same program,
  code and data (Program.cache_key) reads the contracts' pass and the
  per-run bytes from the compilation cache's folder instead of tracing again."""
  key, modules = prog.cache_key(), prog.spec_modules
  if compile_cache.recall('contracts', key, modules) is None:
    extend.check(prog, program_lib.hparam_arrays([program_lib.base_hparams(prog.config)]))
    compile_cache.remember('contracts', key, True, modules)

  def per_run(hp_np, with_rows=False):
    name = f'run_bytes_{int(with_rows)}'
    found = compile_cache.recall(name, key, modules)
    if found is None:
      found = memory.per_run_bytes(prog, hp_np, with_rows)
      compile_cache.remember(name, key, found, modules)
    return found
  memory.check(prog, program_lib.hparam_arrays(
      [r['hparams'] for r in g.runs]), len(g.runs), runs_mesh(len(g.runs)).devices.size,
               f'group {g.name}' if g.name else 'the sweep' if len(g.runs) > 1 else 'the run',
               per_run=per_run)


def finish_summary(workdir, summary, groups, config) -> dict:
  """Every process's runs in one summary.json, and the across-run report."""
  main = distributed.is_main()
  if jax.process_count() > 1:
    summary = merge_summaries(workdir, summary, groups, config)
  if will_report(config, len(summary['runs'])) and main:
    from tinyjax import report
    try:
      report.write(workdir, summary, config)
    finally:  # (a report that fails leaves the runs' summary written)
      write_summary(workdir, summary, merged=True)
  if jax.process_count() > 1:
    distributed.barrier('summary written')
    with open(os.path.join(workdir, 'summary.json')) as f:
      summary = json.load(f)
  return summary


def will_report(config, n_runs: int) -> bool:
  """Whether a job of n_runs runs ends with the sweep report (report.md)."""
  return n_runs > 1 and not writer_lib.output_settings(config)['minimal']


def _last_intact(workdir: str, group_name: str) -> int | None:
  """The newest checkpoint orbax committed (a save cut short has no STEP/)."""
  try:
    return ckpt_lib.latest_step(workdir, group_name)
  except OSError:
    return None


def write_summary(workdir, summary, merged: bool = False):
  """summary.json (in a multi-process job each process writes its share,
  parts/summary.pK.json, until process 0 has merged them: merge_summaries)."""
  path = (os.path.join(workdir, 'summary.json') if merged or jax.process_count() == 1
          else distributed.part_path(workdir, 'summary'))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(summary, f, indent=2)
  os.replace(path + '.tmp', path)


def merge_summaries(workdir, summary, groups, config) -> dict:
  """After every process has finished: process 0 joins their shares in run
  order and writes the across-seed TensorBoard files, which need every run."""
  distributed.barrier('all runs finished')
  if not distributed.is_main():
    return summary
  runs = []
  for k in range(jax.process_count()):
    with open(os.path.join(workdir, 'parts', f'summary.p{k}.json')) as f:
      runs += json.load(f)['runs']
  order = {r['name']: i for i, r in enumerate(r for g in groups for r in g.runs)}
  summary = {**summary, 'runs': sorted(runs, key=lambda r: order[r['name']])}
  if writer_lib.output_settings(config)['across_seeds']:
    for g in groups:
      writer_lib.across_seeds_from_files(os.path.join(workdir, g.name), g.rel_names)
  write_summary(workdir, summary, merged=True)
  return summary


_PROGRAMS: dict[str, program_lib.Program] = {}


def program_for(config, task) -> program_lib.Program:
  """A Program per distinct compiled program, so that jit's cache is reused
  across calls in one process (sequential baselines, tests, notebooks). The key
  leaves out what is not compiled in: traced values, step counts, sweep,
  checkpoint and report settings."""
  key = program_lib.program_key(config)
  if key not in _PROGRAMS:
    _PROGRAMS[key] = program_lib.Program(config, task)
  return _PROGRAMS[key]
