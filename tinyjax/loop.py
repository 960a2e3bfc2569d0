"""train_group(group, prog, task, workdir, sigint): one group of runs on the devices.

The host loop, in four phases (each below, in this order):
  1. place_group: the Program's hyperparameters, data and state on the devices,
     the `runs` axis sharded over a 1-D mesh (padded to a multiple of the
     devices); the newest readable checkpoint restored, if any, else init;
  2. Writers: metrics.jsonl, TensorBoard, the columnar files and the lens
     files, written by one background thread;
  3. Chunks: chunks of `train.chunk_steps` steps; chunk k+1 is dispatched
     before chunk k's metric rows are fetched; checkpoints at the scheduled
     steps, saved by the writer thread after the metrics before them are on
     disk (the chunk loop does not wait for either);
  4. finish: evaluate the final parameters, decode the prompts, summarise.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P
import tqdm

from tinyjax import checkpoint as ckpt_lib
from tinyjax import distributed
from tinyjax import lens_plumbing
from tinyjax import program as program_lib
from tinyjax import writer as writer_lib


def train_group(group, prog, task, workdir, sigint, progress=True) -> list[dict]:
  """Trains every run of `group` with `prog`; returns their summary entries."""
  g = place_group(group, prog, workdir)
  writers = Writers(group, task, workdir, g)
  chunks = Chunks(g, writers, sigint, progress)
  try:
    state, end = chunks.run()
    state, final, gens = evaluate(g, writers, state, end)
  except BaseException as e:  # a fault (or Ctrl-C twice): every thread stops, none waits
    chunks.abort(drain=not isinstance(e, KeyboardInterrupt))
    raise
  chunks.bar.close()
  return summarise(g, task, state, final, end, writers, gens)


# ------------------------------------------------------------ 1. place ---
def runs_mesh(n_runs: int | None = None):
  """A 1-D mesh over every device (or the first n_runs of them: one run is not
  padded to eight); runs are independent, so auto sharding propagates the
  `runs` axis through the whole program without communication."""
  n = jax.device_count()
  if n_runs is not None and jax.process_count() == 1:  # many processes: all take part
    n = min(n_runs, n)
  return jax.make_mesh((n,), ('runs',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])


def _pad(tree, n_pad):
  if not n_pad:
    return tree
  return jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[:1], n_pad, 0)]), tree)


@dataclasses.dataclass
class Placed:
  """A group on the devices: its mesh and padding, hyperparameters, data and
  state, the step it starts from, its checkpoint manager, and the runs this
  process owns (`mine`, all of them in one process; `pos`: run -> column)."""
  group: object
  prog: program_lib.Program
  mesh: object
  n_runs: int
  n_pad: int
  hp: dict
  data: dict
  state: dict
  start: int
  restored: object
  mgr: object
  mine: np.ndarray
  pos: dict
  ahead: threading.Thread | None = None  # the chunk compiling (compile_chunk_ahead)
  lowered: threading.Event | None = None  # set once that chunk is traced and lowered

  def fetch(self, tree, axis=0, first=None):
    """This process's runs of a runs-sharded tree on the host, in run order.
    (Chunk rows: axis=1, and only the `first` rows, the ones that ran.)"""
    def one(x):
      x_host = distributed.local(x, axis)[:first]
      if x_host.shape[axis] == len(self.mine):  # one process, no padding
        return x_host
      return np.take(x_host, np.searchsorted(distributed.owned(x, axis), self.mine), axis=axis)
    return jax.tree.map(one, tree)


def place_group(group, prog, workdir) -> Placed:
  """Phase 1: mesh, hyperparameters, data and the restored (or initial) state."""
  config, n_runs = group.config, len(group.runs)
  hp_np, mesh, n_pad, shard, hp, data = place_inputs(group, prog)

  mgr = ckpt_lib.manager(workdir, group.name, config.checkpoint.keep)
  # At the padded, sharded hyperparameters init is called with below: that call
  # reuses this trace (jit's cache) instead of tracing init a second time.
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(
      (s.shape[0] - n_pad, *s.shape[1:]), s.dtype, weak_type=s.weak_type),
      jax.eval_shape(prog.init, hp))
  start, restored = ckpt_lib.restore_latest(mgr, ckpt_lib.zeros(abstract))
  ahead = lowered = None
  if restored is None:
    start = 0
    ahead, lowered = compile_chunk_ahead(prog, abstract, n_pad, shard, hp, data)
    # Sharded like the chunk's output (init leaves the zeros replicated): else
    # the chunk and evaluate compile twice, for each sharding of the state.
    state = jax.device_put(prog.init(hp), shard)
    hp = prog.with_init(hp, state)
  else:
    state = jax.device_put(_pad(restored, n_pad), shard)
    hp = prog.with_init(hp)
    if distributed.is_main():
      print(f'tinyjax: resuming {group.name or "runs"} from step {start}', flush=True)
  own = distributed.owned(hp['seed'])
  mine = own[own < n_runs]
  return Placed(group, prog, mesh, n_runs, n_pad, hp, data, state, start, restored, mgr,
                mine, {int(i): j for j, i in enumerate(mine)}, ahead, lowered)


def place_inputs(group, prog):
  """A group's hyperparameters (host, unpadded), its mesh, the padding of its
  runs to a multiple of the devices, the runs sharding, and the padded
  hyperparameters and the data on the devices (also tinyjax.lens's)."""
  hp_np = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
  mesh = runs_mesh(len(group.runs))
  n_pad = -len(group.runs) % mesh.devices.size
  shard = NamedSharding(mesh, P('runs'))
  hp = jax.device_put(_pad(hp_np, n_pad), shard)
  data = jax.device_put(prog.data, NamedSharding(mesh, P()))
  return hp_np, mesh, n_pad, shard, hp, data


def compile_chunk_ahead(prog, abstract, n_pad, shard, hp, data):
  """The training chunk compiled on a side thread from the state's shapes,
  while init compiles and runs on this one (both compilations release the
  GIL: init's ~2 s of a fresh start no longer sits before the chunk's). The
  first chunk call joins it and finds the compiled program (jit's caches).
  An error here comes again from that call. (thread, an event set once the
  chunk is lowered, or at its error); (None, None) with several processes."""
  if jax.process_count() > 1:
    return None, None
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(
      (s.shape[0] + n_pad, *s.shape[1:]), s.dtype, sharding=shard, weak_type=s.weak_type),
      abstract)
  hp = prog.with_init(hp, state)

  lowered = threading.Event()

  def compile_():
    try:
      low = prog.chunk.lower(state, hp, data, 0, 1)
      lowered.set()  # (also set below, at an error)
      low.compile()
    except Exception as e:  # noqa: BLE001
      logging.debug('tinyjax: the chunk compiled ahead failed (it compiles when called): %r', e)
    finally:
      lowered.set()
  thread = threading.Thread(target=compile_, daemon=True)
  thread.start()
  return thread, lowered


def _host(x):
  """A host copy of a numeric device array (PRNG keys and the rest as they are)."""
  if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    return np.asarray(x)
  return x


# ---------------------------------------------------------- 2. writers ---
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


class Writers:
  """Phase 2: owns every file a group writes while it trains (the columnar
  metrics and lenses, per-run metrics.jsonl and TensorBoard, live seed
  statistics) and the one background thread (`out`) that writes them."""

  def __init__(self, group, task, workdir, g: Placed):
    self.g, self.log_every = g, group.config.train.log_every
    group_dir, rel = os.path.join(workdir, group.name), group.rel_names
    settings = writer_lib.output_settings(group.config)
    self.columns = writer_lib.Columns(group_dir, g.mine, g.start, jax.process_index(),
                                      clear_all=distributed.is_main())
    all_file_runs = writer_lib.file_runs(rel, settings)
    runs = group.runs
    self.runs = {i: writer_lib.RunWriter(os.path.join(workdir, runs[i]['name']), g.start,
                                         {**runs[i]['hparams'], **runs[i]['swept']},
                                         ['loss', *(f'loss/{c}' for c in task.class_names)])
                 for i in all_file_runs if i in g.pos}
    # Live seed statistics need every run on this host; a multi-process job
    # writes them from the columnar files at the end (train.merge_summaries).
    self.across = (writer_lib.AcrossSeeds(group_dir, rel, g.start)
                   if settings['across_seeds'] and jax.process_count() == 1 else None)
    self.out = writer_lib.AsyncWriter(
        [self.columns, *self.runs.values(), *([self.across] if self.across else [])])
    distributed.barrier(f'writers of {group.name}')  # stale files are gone everywhere
    if distributed.is_main() and len(all_file_runs) < g.n_runs and g.start == 0:
      print(f'tinyjax: {g.n_runs} runs in {group.name or "the sweep"}: metrics of every run in '
            f'{os.path.join(group_dir, "metrics")}/ (tinyjax.results.load), per-run files for '
            f'{len(all_file_runs)} (output.per_run_files, output.sample_seeds)',
            flush=True)

  def write_rows(self, first_step, n_rows, rows):
    """On the writer thread: rows {name: [G, R_mine, ...]} of steps
    first_step, + log_every, ... to every sink."""
    self.write_cols(first_step, lens_plumbing.flatten_rows(
        {k: v[:n_rows] for k, v in rows.items()}))

  def write_cols(self, first_step, cols):
    """The same, with the rows already flattened to [G, R_mine] columns."""
    steps = first_step + self.log_every * np.arange(len(next(iter(cols.values()))))
    self.columns.write('metrics', steps, cols)
    if self.across is not None:
      self.across.write(steps, cols)
    if self.runs:  # the few runs with their own files: every value as a Python float at
      # once (.tolist() gives what float(v[g, j]) does per value, in a tenth of the time)
      names, cols_j = list(cols), [self.g.pos[i] for i in self.runs]
      x_GxFxM = np.stack([np.asarray(v)[:, cols_j].astype(np.float64) for v in cols.values()],
                         -1).tolist()
      for f, w in enumerate(self.runs.values()):
        for g, step in enumerate(steps):
          w.write(int(step), dict(zip(names, x_GxFxM[g][f])))

  def write_lenses(self, step, rows):
    """On the writer thread: waits for the device's lens rows, writes them."""
    rows = self.g.fetch(rows)
    images = rows.pop('attn_image_LxHxTxT', None)
    cols = lens_plumbing.flatten_rows({k: v[None] for k, v in rows.items()})
    self.columns.write('lenses', [step], cols)
    for i, w in self.runs.items():
      j = self.g.pos[i]
      w.write_lenses(step, {k: float(v[0, j]) for k, v in cols.items()},
                     lens_images(images[j]) if images is not None
                     and i < self.g.prog.lens.attention_images else None)


# ----------------------------------------------------------- 3. chunks ---
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


def progress_bar(g: Placed, progress: bool):
  """The steps done, on process 0 (with the median loss of the last row)."""
  n_runs, mesh, n_dev = g.n_runs, g.mesh, g.mesh.devices.size
  return tqdm.tqdm(
      total=g.group.config.train.steps, initial=g.start,
      disable=not (progress and distributed.is_main()),
      desc=(g.group.name or f'{n_runs} run' + ('s' if n_runs > 1 else ''))
      + (f' on {n_dev} {mesh.devices.flat[0].platform} devices' if n_dev > 1 else ''),
      unit='step', dynamic_ncols=True)


class Chunks:
  """Phase 3: owns the chunk loop, its progress bar, the checkpoints and the
  side thread that compiles the end-of-run decoding while training runs."""

  def __init__(self, g: Placed, writers: Writers, sigint, progress: bool):
    self.g, self.writers, self.sigint = g, writers, sigint
    self.ckpt_steps = checkpoint_steps(g.group.config)
    self.bar = progress_bar(g, progress)
    # Started once the chunk compiled ahead is lowered (XLA then compiles it
    # without the GIL, on one core: the decoding compiles on the other
    # instead of beside the first chunks, ~2.5 s of a 1,024-run Timmy job);
    # else once the first chunk is compiled and dispatched (tracing the
    # decoding meanwhile would hold the GIL the chunk's tracing needs).
    self.warm = threading.Thread(target=self._warm_up, args=(g.state,), daemon=True)

  def _warm_up(self, state):
    """The end-of-run decoding compiles on a side thread while training runs
    (an error here, e.g. out of memory, comes again from the decoding itself)."""
    try:
      self.g.prog.warm_up_final(state, self.g.hp, self.g.data)
    except Exception:  # noqa: BLE001
      pass
    if self.g.n_runs > 1 and not self.g.prog.minimal and distributed.is_main():
      try:
        from tinyjax import report  # the sweep report follows: its figure's imports now
        report.preload()
      except Exception:  # noqa: BLE001  (the report itself says what is wrong)
        pass

  def run(self):
    """Every chunk of the schedule (or up to Ctrl-C); (state, the step it reached)."""
    g, state, pending, end = self.g, self.g.state, None, self.g.start
    save_0 = g.start == 0 and 0 in self.ckpt_steps and g.restored is None
    if g.lowered is not None:
      g.lowered.wait()
      self.warm.start()
    for chunk_start, n in chunk_schedule(g.group.config, g.start):
      if g.ahead is not None:
        g.ahead.join()
        g.ahead = None
      new_state, rows = g.prog.chunk(state, g.hp, g.data, chunk_start, n)
      if save_0:  # once step 0 is running: its checkpoint (and lenses) is off the first step's path
        self.save(0, state)
        save_0 = False
      if self.warm.ident is None:
        self.warm.start()
      if pending is not None:
        end = self.land(*pending)
        if self.sigint.hit:
          break
      pending = (chunk_start, n, rows, new_state)
      state = new_state
    else:
      if pending is not None:
        end = self.land(*pending)
    if save_0:  # no chunk ran (train.steps 0)
      self.save(0, state)
    if self.warm.ident is None:  # no chunk ran (a finished run resumed)
      self.warm.start()
    self.warm.join()
    return state, end

  def land(self, chunk_start, n, rows, state_after):
    """Fetches a chunk's rows (waits for the device), queues the writes."""
    g, out = self.g, self.writers.out
    n_rows = math.ceil(n / self.writers.log_every)
    rows = g.fetch(rows, axis=1, first=n_rows)
    out.submit(self.writers.write_rows, chunk_start, n_rows, rows)  # raises the writer's error
    out.submit(ckpt_lib.raise_if_failed, g.mgr)  # and (at the next submit) a failed save's
    self.bar.update(n)
    loss = rows['loss'][n_rows - 1]
    if distributed.is_main():
      self.bar.set_postfix(loss=f'{np.nanmedian(loss):.4f}' if np.isfinite(loss).any() else 'nan')
    end = chunk_start + n
    if end in self.ckpt_steps or self.sigint.hit:
      self.save(end, state_after)
    return end

  def save(self, step, st):
    """Checkpoints the real runs (not the padding), so any device count
    restores; the checkpoint lenses are measured on the same state. Both
    are queued on the writer thread behind the metric rows before `step`,
    so the chunk loop never waits for the writer (it waited here for a
    flush: 43 s of a loaded 64 x 6,000 job, experiments/results/
    cost_profile_64x6000_under_load.json) and a checkpoint still never
    runs ahead of its metrics."""
    g, out = self.g, self.writers.out
    if g.prog.has_checkpoint_lenses:
      out.submit(self.writers.write_lenses, step, g.prog.checkpoint_lenses(st, g.hp, g.data, step))
    st = jax.tree.map(lambda x: x[:g.n_runs], st) if g.n_pad else st
    out.submit(self._save, step, st)

  def _save(self, step, st):
    """On the writer thread: the rows queued before it on disk, then orbax's
    save (asynchronous: its own threads write the files)."""
    self.writers.out.flush_sinks()
    if jax.process_count() == 1:
      # Host copies: orbax saves numpy arrays with less work than sharded
      # device arrays (~0.06 s a Timmy save at 64 runs instead of ~0.11;
      # the same files' values); with several processes no host has them all.
      st = jax.tree.map(_host, st)
    self.g.mgr.save(step, args=ocp.args.StandardSave(st), force=True)

  def abort(self, drain: bool = True):
    """After a fault: stops the bar, the writer and orbax's threads; with
    `drain`, the writer first writes the rows and saves the checkpoints
    queued before the fault (a device fault leaves the disk working)."""
    if self.warm.ident is not None:
      self.warm.join()
    self.bar.close()
    self.writers.out.abort(drain)
    ckpt_lib.stop(self.g.mgr)


# ----------------------------------------------------------- 4. finish ---
def evaluate(g: Placed, writers: Writers, state, end):
  """The final evaluation at `end` (the last step, or where Ctrl-C stopped us):
  its row written, the writers closed, the last checkpoint committed; the
  prompts' decoding queued behind it on the devices meanwhile (returned: a
  function that waits for it and returns the texts, summarise's)."""
  # Program.evaluate, with the row taken to the host whole (no device slicing:
  # small eager programs to compile at the end, global ones in many processes).
  prog, config = g.prog, g.group.config
  state, rows = prog.chunk(state, g.hp, g.data, end, 0)
  final = lens_plumbing.flatten_rows(program_lib.final_rows(g.fetch(rows, axis=1, first=1)))
  writers.out.submit(writers.write_cols, end, final)
  # (after the final row is queued: a decoding that fails does not lose it)
  gens = (prog.start_generations(state['params'], config.eval.max_new_tokens, select=g.fetch)
          if prog.can_decode and not prog.minimal else lambda: [{} for _ in g.mine])  # a model without decode: none
  writers.out.close()
  g.mgr.close()  # waits for the last save; ends orbax's threads
  return state, final, gens


def summarise(g: Placed, task, state, final, end, writers, gens) -> list[dict]:
  """The prompts' texts (gens(), evaluate's); one summary entry per run this process owns."""
  prog, config, runs = g.prog, g.group.config, g.group.runs
  gens = gens()
  milestones = g.fetch(state['milestones'])
  diverged = g.fetch(state['diverged_step'])
  results = []
  for r, i in enumerate(g.mine):
    run = runs[i]
    entry = {'name': run['name'], 'dir': run['name'], 'group': g.group.name, 'index': int(i),
             'files': i in writers.runs,
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
