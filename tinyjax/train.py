"""train_and_evaluate(config, workdir): every run of a config, start to summary.

Host loop, per group of runs (see tinyjax.sweep):
  1. build the Program, put hyperparameters and state on the devices with the
     `runs` axis sharded over a 1-D mesh (padded to a multiple of the devices);
  2. restore the newest readable checkpoint, if any, else init;
  3. run chunks of `train.chunk_steps` steps: chunk k+1 is dispatched before
     chunk k's metric rows are fetched, and a background thread writes them;
  4. checkpoint at the scheduled steps (after the metrics before them are on
     disk), evaluate the final parameters, decode the prompts, summarise.

A fault on any thread (a full disk, a read-only workdir, the device out of
memory) stops the writer and orbax's threads and ends the run with one
tinyjax.faults.Fault naming it and the last intact checkpoint; a sweep that
cannot fit in device memory is refused before anything is compiled
(tinyjax.memory).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P
import tqdm

from tinyjax import checkpoint as ckpt_lib
from tinyjax import distributed
from tinyjax import extend
from tinyjax import faults
from tinyjax import memory
from tinyjax import model as model_lib
from tinyjax import program as program_lib
from tinyjax import sweep as sweep_lib
from tinyjax import tasks as tasks_lib
from tinyjax import validate
from tinyjax import writer as writer_lib
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


def checkpoint_steps(config) -> set[int]:
  c, steps = config.checkpoint, config.train.steps
  out = {steps}
  if c.every:
    out.update(range(c.every, steps, c.every))
  out.update(s for s in c.get('steps', ()) if 0 <= s <= steps)
  if c.log_spaced:
    s = config.train.log_every
    out.add(0)
    while s < steps:
      out.add(s)
      s *= 2
  return out


def chunk_schedule(config, start: int) -> list[tuple[int, int]]:
  steps, size = config.train.steps, program_lib.chunk_steps(config)
  bounds = sorted({b for b in checkpoint_steps(config) | set(range(0, steps, size))
                   | {steps} if start <= b <= steps})
  out = []
  for a, b in zip(bounds, bounds[1:]):
    out.append((a, b - a))
  return out


def prepare_workdir(config, workdir: str, overwrite: bool) -> None:
  """Refuses a workdir that holds a different experiment; records the config."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f'--workdir {workdir}: is a file, not a directory; choose another --workdir')
  path = os.path.join(workdir, 'config.json')
  new = json.loads(config.to_json_best_effort(sort_keys=True))
  if os.path.exists(path) and not overwrite:
    with open(path) as f:
      old = json.load(f)
    if old != new:
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


def train_and_evaluate(config, workdir: str, overwrite: bool = False,
                       progress: bool = True) -> dict:
  """Trains every run of `config` into `workdir`; returns the summary dict."""
  validate.check(config)
  groups = sweep_lib.expand(config)
  # All errors before any write; a resumed text task keeps its saved tokenizer.
  resume = not overwrite and os.path.exists(os.path.join(workdir, 'config.json'))
  tasks = [build_task(g.config, workdir if resume else None, g.name) for g in groups]
  for g, task in zip(groups, tasks):
    prog = program_for(g.config, task)
    extend.check(prog)  # the task, model and lens contracts, by shapes
    memory.check(prog, program_lib.hparam_arrays(  # a sweep too big for the device: refused here
        [r['hparams'] for r in g.runs]), len(g.runs), runs_mesh(len(g.runs)).devices.size,
                 f'group {g.name}' if g.name else 'the sweep' if len(g.runs) > 1 else 'the run')
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
    with _Sigint() as sigint:
      for group, task in zip(groups, tasks):
        summary['runs'] += train_group(group, task, workdir, sigint, progress)
        write_summary(workdir, summary)
        if sigint.hit and not all(r['complete'] for r in summary['runs']):
          raise Interrupted(workdir)
    if jax.process_count() > 1:
      summary = merge_summaries(workdir, summary, groups, config)
    if len(summary['runs']) > 1 and main:
      from tinyjax import report
      report.write(workdir, summary, config)
      write_summary(workdir, summary, merged=True)
    if jax.process_count() > 1:
      distributed.barrier('summary written')
      with open(os.path.join(workdir, 'summary.json')) as f:
        summary = json.load(f)
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


def _last_intact(workdir: str, group_name: str) -> int | None:
  """The newest checkpoint orbax committed (a save cut short has no STEP/)."""
  try:
    return ckpt_lib.latest_step(workdir, group_name)
  except OSError:
    return None


def runs_mesh(n_runs: int | None = None):
  """A 1-D mesh over every device (or the first n_runs of them: one run is not
  padded to eight); runs are independent, so auto sharding propagates the
  `runs` axis through the whole program without communication."""
  n = jax.device_count()
  if n_runs is not None and jax.process_count() == 1:  # many processes: all take part
    n = min(n_runs, n)
  return jax.make_mesh((n,), ('runs',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])


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


def _pad(tree, n_pad):
  if not n_pad:
    return tree
  return jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[:1], n_pad, 0)]), tree)


_PROGRAMS: dict[str, program_lib.Program] = {}


def program_for(config, task) -> program_lib.Program:
  """A Program per distinct compiled program, so that jit's cache is reused
  across calls in one process (sequential baselines, tests, notebooks). The key
  leaves out what is not compiled in: traced values, step counts, sweep,
  checkpoint and report settings."""
  cfg = json.loads(config.to_json_best_effort(sort_keys=True))
  for path in list(program_lib.TRACED) + ['train.steps']:
    *parents, leaf = path.split('.')
    node = cfg
    for p in parents:
      node = node[p]
    node.pop(leaf, None)
  cfg['train']['chunk_steps'] = program_lib.chunk_steps(config)
  for section in ('sweep', 'checkpoint', 'report', 'output'):
    cfg.pop(section, None)
  key = json.dumps(cfg, sort_keys=True)
  if key not in _PROGRAMS:
    _PROGRAMS[key] = program_lib.Program(config, task)
  return _PROGRAMS[key]


def place(prog, hp_np, n_runs: int):
  """The group's mesh, padding, and its hyperparameters (padded, sharded over
  `runs`) and data (replicated) on the devices."""
  mesh = runs_mesh(n_runs)
  n_pad = -n_runs % mesh.devices.size
  hp = jax.device_put(_pad(hp_np, n_pad), NamedSharding(mesh, P('runs')))
  data = jax.device_put(prog.data, NamedSharding(mesh, P()))
  return mesh, n_pad, hp, data


def lens_images(attn_LxHxTxT) -> dict[str, np.ndarray]:
  """One grey image per layer: the probe's attention maps of its heads side
  by side (query rows, key columns), 4 pixels a cell, a white line between."""
  out = {}
  for l, heads in enumerate(np.asarray(attn_LxHxTxT)):
    cells = [np.kron(a, np.ones((4, 4))) for a in heads]
    gap = np.ones((cells[0].shape[0], 2))
    out[f'attention_map/layer{l}'] = np.concatenate(
        [x for c in cells for x in (c, gap)][:-1], axis=1).astype(np.float32)
  return out


def train_group(group, task, workdir, sigint, progress=True) -> list[dict]:
  config = group.config
  prog = program_for(config, task)
  runs = group.runs
  n_runs = len(runs)
  hp_np = program_lib.hparam_arrays([r['hparams'] for r in runs])
  mesh, n_pad, hp, data = place(prog, hp_np, n_runs)
  n_dev, shard = mesh.devices.size, NamedSharding(mesh, P('runs'))

  mgr = ckpt_lib.manager(workdir, group.name, config.checkpoint.keep)
  target = ckpt_lib.numpy_target(prog.init, hp_np)
  start, restored = ckpt_lib.restore_latest(mgr, target)
  if restored is None:
    start = 0
    # Sharded like the chunk's output (init leaves the zeros replicated): else
    # the chunk and evaluate compile twice, for each sharding of the state.
    state = jax.device_put(prog.init(hp), shard)
    hp = prog.with_init(hp, state)
  else:
    state = jax.device_put(_pad(restored, n_pad), shard)
    hp = prog.with_init(hp)
    if distributed.is_main():
      print(f'tinyjax: resuming {group.name or "runs"} from step {start}', flush=True)

  # This process's runs (all of them in one process); `fetch` brings their
  # part of a runs-sharded array to the host, in run order.
  own = distributed.owned(hp['seed'])
  mine = own[own < n_runs]
  pos = {int(i): j for j, i in enumerate(mine)}

  def fetch(tree, axis=0, first=None):
    """(Chunk rows: axis=1, and only the `first` rows, the ones that ran.)"""
    def one(x):
      x_host = distributed.local(x, axis)[:first]
      if x_host.shape[axis] == len(mine):  # one process, no padding
        return x_host
      return np.take(x_host, np.searchsorted(distributed.owned(x, axis), mine), axis=axis)
    return jax.tree.map(one, tree)

  group_dir = os.path.join(workdir, group.name)
  rel = group.rel_names
  settings = writer_lib.output_settings(config)
  columns = writer_lib.Columns(group_dir, mine, start, jax.process_index(),
                               clear_all=distributed.is_main())
  all_file_runs = writer_lib.file_runs(rel, settings)
  file_runs = [i for i in all_file_runs if i in pos]
  writers = {i: writer_lib.RunWriter(os.path.join(workdir, runs[i]['name']), start,
                                     {**runs[i]['hparams'], **runs[i]['swept']},
                                     ['loss', *(f'loss/{c}' for c in task.class_names)])
             for i in file_runs}
  # Live seed statistics need every run on this host; a multi-process job
  # writes them from the columnar files at the end (merge_summaries).
  across = (writer_lib.AcrossSeeds(group_dir, rel, start)
            if settings['across_seeds'] and jax.process_count() == 1 else None)
  out = writer_lib.AsyncWriter([columns, *writers.values(), *([across] if across else [])])
  distributed.barrier(f'writers of {group.name}')  # stale files are gone everywhere
  ckpt_steps = checkpoint_steps(config)
  log_every = config.train.log_every
  main = distributed.is_main()
  if main and len(all_file_runs) < n_runs and start == 0:
    print(f'tinyjax: {n_runs} runs in {group.name or "the sweep"}: metrics of every run in '
          f'{os.path.join(group_dir, "metrics")}/ (tinyjax.results.load), per-run files for '
          f'{len(all_file_runs)} (output.per_run_files, output.sample_seeds)',
          flush=True)
  bar = tqdm.tqdm(total=config.train.steps, initial=start, disable=not (progress and main),
                  desc=(group.name or f'{n_runs} run' + ('s' if n_runs > 1 else ''))
                  + (f' on {n_dev} {mesh.devices.flat[0].platform} devices' if n_dev > 1 else ''),
                  unit='step', dynamic_ncols=True)

  def write_rows(first_step, n_rows, rows):
    """On the writer thread: rows {name: [G, R_mine, ...]} of steps
    first_step, + log_every, ... to every sink."""
    write_cols(first_step, program_lib.flatten_rows({k: v[:n_rows] for k, v in rows.items()}))

  def write_cols(first_step, cols):
    """The same, with the rows already flattened to [G, R_mine] columns."""
    steps = first_step + log_every * np.arange(len(next(iter(cols.values()))))
    columns.write('metrics', steps, cols)
    if across is not None:
      across.write(steps, cols)
    for i, w in writers.items():
      for g, step in enumerate(steps):
        w.write(int(step), {k: float(v[g, pos[i]]) for k, v in cols.items()})

  def write_lenses(step, rows):
    """On the writer thread: waits for the device's lens rows, writes them."""
    rows = fetch(rows)
    images = rows.pop('attn_image_LxHxTxT', None)
    cols = program_lib.flatten_rows({k: v[None] for k, v in rows.items()})
    columns.write('lenses', [step], cols)
    for i, w in writers.items():
      w.write_lenses(step, {k: float(v[0, pos[i]]) for k, v in cols.items()},
                     lens_images(images[pos[i]]) if images is not None
                     and i < prog.lens.attention_images else None)

  def save(step, st):
    """Checkpoints the real runs (not the padding), so any device count
    restores; the checkpoint lenses are measured on the same state."""
    if prog.has_checkpoint_lenses:
      out.submit(write_lenses, step, prog.checkpoint_lenses(st, hp, data, step))
    st = jax.tree.map(lambda x: x[:n_runs], st) if n_pad else st
    mgr.save(step, args=ocp.args.StandardSave(st), force=True)

  def finish(chunk_start, n, rows, state_after):
    """Fetches a chunk's rows (waits for the device), queues the writes."""
    n_rows = math.ceil(n / log_every)
    rows = fetch(rows, axis=1, first=n_rows)
    out.submit(write_rows, chunk_start, n_rows, rows)  # raises the writer's error, if any
    ckpt_lib.raise_if_failed(mgr)  # and a failed save's
    bar.update(n)
    loss = rows['loss'][n_rows - 1]
    if main:
      bar.set_postfix(loss=f'{np.nanmedian(loss):.4f}' if np.isfinite(loss).any() else 'nan')
    end = chunk_start + n
    if end in ckpt_steps or sigint.hit:
      out.flush()  # metrics before `end` are on disk before the checkpoint
      save(end, state_after)
    return end

  def warm_up():
    """The end-of-run functions compile on a side thread while training runs
    (an error here, e.g. out of memory, comes again from evaluate, in the loop)."""
    try:
      prog.warm_up_final(state, hp, data)
    except Exception:  # noqa: BLE001
      pass

  warm = threading.Thread(target=warm_up, daemon=True)
  warm.start()
  pending = None
  end = start
  try:
    if start == 0 and 0 in ckpt_steps and restored is None:
      save(0, state)
    for chunk_start, n in chunk_schedule(config, start):
      new_state, rows = prog.chunk(state, hp, data, chunk_start, n)
      if pending is not None:
        end = finish(*pending)
        if sigint.hit:
          break
      pending = (chunk_start, n, rows, new_state)
      state = new_state
    else:
      if pending is not None:
        end = finish(*pending)

    # Final evaluation at the last step (or where Ctrl-C stopped us): a row at
    # `end`, generations, summary entries.
    warm.join()
    state, final = prog.evaluate(state, hp, data, end)
    final = program_lib.flatten_rows({k: v[None] for k, v in fetch(final).items()})
    out.submit(write_cols, end, final)
    out.close()
    mgr.close()  # waits for the last save; ends orbax's threads
  except BaseException:  # a fault (or Ctrl-C twice): every thread stops, none waits
    warm.join()
    bar.close()
    out.abort()
    ckpt_lib.stop(mgr)
    raise
  bar.close()
  gens = (prog.generations(state['params'], config.eval.max_new_tokens, select=fetch)
          if prog.can_decode else [{} for _ in mine])  # a model without decode: none
  milestones = fetch(state['milestones'])
  diverged = fetch(state['diverged_step'])
  results = []
  for r, i in enumerate(mine):
    run = runs[i]
    entry = {'name': run['name'], 'dir': run['name'], 'group': group.name, 'index': int(i),
             'files': i in writers,
             'hparams': {**run['hparams'], **run['swept']}, 'swept': run['swept'],
             'num_params': prog.num_params, 'complete': end >= config.train.steps,
             'final': {'step': end, **{k: float(v[0, r]) for k, v in final.items()}}}
    for k, (name, *_) in enumerate(prog.milestones):
      entry[name] = int(milestones[r, k]) if milestones[r, k] >= 0 else None
    entry['diverged'] = bool(diverged[r] >= 0)
    entry['diverged_step'] = int(diverged[r]) if diverged[r] >= 0 else None
    entry['generations'] = gens[r]
    if task.expected:
      entry['generation_correct'] = {p: gens[r][p] == task.expected[p] for p in gens[r]
                                     if p in task.expected}
    entry['final'] = {k: (v if math.isfinite(v) else None) if isinstance(v, float) else v
                      for k, v in entry['final'].items()}
    results.append(entry)
  return results
