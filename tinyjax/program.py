"""The compiled training program of one group of runs.

A group is a set of runs whose arrays have the same shapes (same model, task
and batch size); they differ only in hyperparameters that are traced values:
seed, learning rate, weight decay, momentum, Adam betas, init scale, Grokfast's
alpha and lambda. Every function below is written for ONE run and `jax.vmap`-ed
over a leading `runs` axis; a single run is a group of one. The `runs` axis is
sharded over devices by the caller (tinyjax.loop), so nothing here knows about
devices.

Training state of one run (a pytree, checkpointed as is):
  params        nnx.State of the model's parameters
  opt_state     optax state (inject_hyperparams keeps lr etc. in it)
  milestones    int32[K]: first step each milestone condition held, -1 if never
  diverged_step int32: first step with a non-finite loss or gradient, -1 if none
After `diverged_step` a run is frozen: its parameters stop changing.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np

from tinyjax import compile_cache
from tinyjax import extend
from tinyjax import generation
from tinyjax import lens_plumbing
from tinyjax import lenses as lenses_lib
from tinyjax import loss as loss_lib
from tinyjax import model as model_lib
from tinyjax import optimizer as optimizer_lib
from tinyjax import tasks as tasks_lib

# config path -> hyperparameter name. These may vary inside one compiled group.
TRACED = {
    'seed': 'seed',
    'optimizer.lr': 'lr',
    'optimizer.momentum': 'momentum',
    'optimizer.weight_decay': 'weight_decay',
    'optimizer.b1': 'b1',
    'optimizer.b2': 'b2',
    'model.init_scale': 'init_scale',
    'optimizer.grokfast_alpha': 'grokfast_alpha',
    'optimizer.grokfast_lambda': 'grokfast_lambda',
}
OPS = {'<': jnp.less, '<=': jnp.less_equal, '>': jnp.greater, '>=': jnp.greater_equal}


def chunk_steps(config) -> int:
  """Steps per compiled chunk: train.chunk_steps, or fewer for a run shorter
  than that (a chunk's rows are [chunk_steps / log_every, runs, ...] however
  few steps it runs: a 300-step run would fetch 100 rows per chunk, 70 NaN)."""
  t = config.train
  return min(t.chunk_steps, -(-t.steps // t.log_every) * t.log_every)


def momentum_unread(config) -> bool:
  """SGD whose momentum is 0 in every run (0 in the config, not swept): its
  momentum trace is never read (Program.optimizer). Part of program_key:
  the compiled programs differ, and momentum itself is traced (not in the key)."""
  opt = config.optimizer
  swept = config.get('sweep', {}).get('grid', {}).get('optimizer', {})
  return opt.name == 'sgd' and opt.get('momentum', 0.0) == 0 and 'momentum' not in swept


def program_key(config) -> str:
  """The config's fields that are compiled into the programs, as JSON: not
  the traced values, step counts, sweep, checkpoint and report settings."""
  import json
  cfg = json.loads(config.to_json_best_effort(sort_keys=True))
  cfg['momentum_unread'] = momentum_unread(config)  # (before momentum and sweep go)
  for path in list(TRACED) + ['train.steps']:
    *parents, leaf = path.split('.')
    node = cfg
    for p in parents:
      node = node[p]
    node.pop(leaf, None)
  cfg['train']['chunk_steps'] = chunk_steps(config)
  for section in ('sweep', 'checkpoint', 'report', 'output'):
    cfg.pop(section, None)
  cfg['minimal'] = bool(config.get('output', {}).get('minimal', False))  # bare mode compiles less
  return json.dumps(cfg, sort_keys=True)


def spec_modules(config) -> tuple[str, ...]:
  """The modules of the config's 'package.module:attr' specs (task, model,
  extra lenses): their source is part of the saved programs' key."""
  specs = [config.task.get('name'), config.model.get('name'),
           *config.get('lenses', {}).get('extra', ())]
  return tuple(sorted({s.rsplit(':', 1)[0] for s in specs if isinstance(s, str) and ':' in s
                       and not extend.is_file_spec(s)}))


def base_hparams(config) -> dict[str, float]:
  """The traced hyperparameters of `config` as {name: value}.

  Optional fields a config does not declare (e.g. Grokfast's) are left out, so
  older configs keep exactly their hyperparameters and optimizer state.
  """
  out = {}
  for path, name in TRACED.items():
    node = config
    for part in path.split('.'):
      if part not in node:
        break
      node = node[part]
    else:
      out[name] = node
  return out


def length_buckets(config, task) -> tuple[int, ...]:
  """The padded lengths an unlogged step may run at (train.bucket_lengths
  plus the rows' full length), or () when the option is off (absent or empty).

  Rows are right-padded to the longest row of the data set; with buckets, an
  unlogged step cuts its batch to the first bucket that holds the longest row
  of any run's batch that step. Causal attention and the mask make the cut
  positions dead weight, so only rounding and the dropout masks (drawn at the
  cut shape) change; each bucket compiles one more copy of the step."""
  lengths = tuple(config.train.get('bucket_lengths', ()) or ())
  if not lengths:
    return ()
  if not isinstance(task.train, tasks_lib.Split):
    raise tasks_lib.ConfigError(
        f'train.bucket_lengths: {lengths} is not allowed for task {config.task.name!r}, '
        'whose windows all have the same length; use ()')
  full = task.train.seq_len
  if any(not isinstance(b, int) or b < 1 for b in lengths):
    raise tasks_lib.ConfigError(f'train.bucket_lengths: {lengths} is not allowed; use '
                                'positive integers (lengths in tokens)')
  return tuple(sorted({b for b in lengths if b < full} | {full}))


def final_rows(rows: dict) -> dict:
  """The rows of a chunk run for zero steps (Program.evaluate) without what
  only an applied update has (update_ratio/*: that update is not applied)."""
  return {k: v for k, v in rows.items() if not k.startswith('update_ratio/')}


def hparam_arrays(runs_hparams: list[dict]) -> dict[str, np.ndarray]:
  return {k: np.asarray([h[k] for h in runs_hparams],
                        np.int32 if k == 'seed' else np.float32)
          for k in runs_hparams[0]}


class Program(generation.Generation, lens_plumbing.LensPlumbing):
  """Jitted init and chunk (training and, for zero steps, the final evaluation)
  for one group of runs; it asks the task for
  batches, tinyjax.generation (and the sampler) for text, tinyjax.lens_plumbing
  for the lenses."""

  def __init__(self, config, task):
    self.config, self.task = config, task
    self.vocab_size = config.model.get('vocab_size', 0) or len(task.vocab)
    self.max_len = task.max_len
    self.log_every = config.train.log_every
    self.eval_every = config.eval.every or config.train.log_every
    # Explicit eval steps (tiny-llm's CHECKPOINTS) replace eval.every.
    self.eval_steps = np.asarray(config.eval.get('steps', ()) or [-1], np.int32)
    self.groups_per_chunk = chunk_steps(config) // self.log_every
    self.milestones = [(name, *spec) for name, spec in config.milestones.items()]
    self.buckets = length_buckets(config, task)
    abstract = extend.build_abstract(lambda: model_lib.build(
        config.model, self.vocab_size, self.max_len, nnx.Rngs(0)), config.model.name)
    self.graphdef, abstract_params = nnx.split(abstract)
    self.num_params = model_lib.count_params(abstract_params)
    # An eval source named 'train' (a corpus's train estimate) reads data['train'].
    self.data = {'train': task.train.arrays(),
                 **{k: s.arrays() for k, s in task.evals.items() if k != 'train'}}
    self._init_generation(config, task, abstract)  # tinyjax.generation
    self._init_lenses(config, task, abstract, abstract_params)  # tinyjax.lens_plumbing
    # Bare mode (output.minimal): every step is the light step (loss, gradient
    # norm, what a milestone watches); no evaluation, lens or generation.
    self.minimal = bool(config.get('output', {}).get('minimal', False))
    if self.minimal:
      self.step_lenses, self.extra_lenses, self.lens_milestones = [], [], False
      self.has_checkpoint_lenses = self.lens.geometry = False  # (no w0 either)
      self._prompts = {'track': False}

    # init runs once per run: it is compiled at XLA's lowest backend
    # optimisation level (the threefry init of a 64-run sweep takes ~8 s to
    # compile optimised, ~1.5 s not) since its run time is nothing. Not
    # generate: 100 decoding steps of unoptimised code cost far more.
    once = {'xla_backend_optimization_level': 0}
    # Each traced and lowered once per config, code and data: a rerun reads
    # them from the compilation cache's folder (tinyjax.compile_cache.Saved).
    self.spec_modules = spec_modules(config)
    saved = lambda name, fn, **kw: compile_cache.saved(name, fn, self.cache_key,
                                                       self.spec_modules, **kw)
    self.init = saved('init', jax.vmap(self._init_run), compiler_options=once)
    self.chunk = saved('chunk', self._chunk)
    # The config's compiled-in fields as they are now: a caller may change the
    # ConfigDict after building this program (the saved programs' key must
    # describe what was traced, not the config's later state).
    self._program_key, self._cache_key = program_key(config), None

  def cache_key(self) -> str:
    """What the compiled programs depend on besides the code and their
    arguments' shapes: the config's compiled-in fields (program_key) and the
    task's data and vocabulary (a corpus edited in place changes it)."""
    if self._cache_key is None:
      import hashlib
      h = hashlib.sha256(self._program_key.encode())
      h.update(repr(getattr(self.task.vocab, 'tokens', self.task.vocab)).encode())
      t = self.task
      h.update(repr((t.class_names, t.prompts, t.expected, t.prompt_buckets,
                     t.prompt_template, self.vocab_size, self.max_len)).encode())
      for path, x in sorted(jax.tree_util.tree_flatten_with_path(self.data)[0],
                            key=lambda kv: jax.tree_util.keystr(kv[0])):
        x = np.ascontiguousarray(x)
        h.update(f'{jax.tree_util.keystr(path)}{x.dtype}{x.shape}'.encode())
        h.update(x.tobytes())
      self._cache_key = h.hexdigest()
    return self._cache_key

  # ------------------------------------------------------------ one run ---
  def optimizer(self, hp):
    """The run's optax optimizer (tinyjax.optimizer.make); where SGD's
    momentum is 0 in every run, its trace is not read or rewritten
    (optimizer.momentum_unread: the same updates and state layout; the trace's
    read and write cost 5-7% of a Timmy step at 64-1,024 runs)."""
    tx = optimizer_lib.make(self.config.optimizer, hp)
    return optimizer_lib.momentum_unread(tx) if momentum_unread(self.config) else tx

  def _init_run(self, hp):
    key = jax.random.key(hp['seed'])
    model = model_lib.build(self.config.model, self.vocab_size, self.max_len,
                            nnx.Rngs(params=jax.random.fold_in(key, 0)))
    params = nnx.state(model)
    params = jax.tree.map(lambda p: p * hp['init_scale'], params)
    return {'params': params,
            'opt_state': self.optimizer(hp).init(params),
            # At least one slot: orbax refuses to save a zero-size array, so a
            # config without milestones could not checkpoint.
            'milestones': -jnp.ones((max(len(self.milestones), 1),), jnp.int32),
            'diverged_step': jnp.int32(-1)}

  def _batch(self, data, hp, step, length=None):
    """The task's training batch for `step` (rows or stream windows), drawn
    from the run's key: no data-loader state, so resume is exact. length: its
    rows cut to their first `length` positions (bucketing, length_buckets)."""
    key = jax.random.fold_in(jax.random.key(hp['seed']), 1)
    batch = self.task.train.batch(data, key, step, self.config.train.batch_size)
    if length is not None:
      batch = {k: v[:, :length] for k, v in batch.items()}
    return batch

  def call(self, params, x_NxT, dropout_key=None):
    """(logits, aux) of one run's model on x_NxT."""
    model = nnx.merge(self.graphdef, params)
    if self.config.model.get('dropout', 0.0):
      return model(x_NxT, dropout_key=dropout_key)
    return model(x_NxT)

  def _forward(self, params, batch, dropout_key=None):
    logits, aux = self.call(params, batch['x_NxT'], dropout_key)
    ce = (self.task.loss or loss_lib.token_ce)(logits, batch['y_NxT'])
    mask = batch['mask_NxT']
    return (ce * mask).sum() / jnp.maximum(mask.sum(), 1.0), (logits, aux)

  def _update_milestones(self, state, m, step):
    ms = state['milestones']
    for k, (_, metric, op, threshold) in enumerate(self.milestones):
      if metric in m:
        hit = OPS[op](m[metric], threshold) & (state['diverged_step'] < 0)
        ms = ms.at[k].set(jnp.where((ms[k] < 0) & hit, step, ms[k]))
    return {**state, 'milestones': ms}

  def _step_run(self, state, hp, data, step, full=True, length=None, train=True, row=None,
                row_fn=None):
    """One step of one run: the metrics at the current parameters, then the
    update. train=False (traced; the final evaluation): the metrics only, the
    parameters and optimizer state kept, lr the last update's.

    full: True, the metric row (every metric of the config); False, only what
    every step needs (loss and grad_norm for the divergence check, the train
    metrics a milestone watches; XLA drops the rest); or a traced bool, the
    row where it holds and `row` passed through where not: one forward and
    backward pass for the logged and the unlogged steps of the chunk, the row's
    own work in a branch that runs at the logged steps only. row_fn: what
    computes that row's own work (default self._row; _chunk passes it jitted,
    so that its trace also gives the NaN rows their shapes).
    """
    batch = self._batch(data['train'], hp, step, length)
    dropout_key = self._dropout_key(hp, step)
    params = state['params']
    (loss, (logits, aux)), grads = jax.value_and_grad(self._forward, has_aux=True)(
        params, batch, dropout_key)
    # What every step needs; the milestones read it (a watched metric is in
    # both, the same value).
    watched = {metric for _, metric, _, _ in self.milestones}
    light = {k: v for k, v in self._metrics(params, grads, batch, logits, aux).items()
             if k in {'loss', 'grad_norm'} | watched}
    light['loss'] = loss
    if self.lens_milestones:  # a milestone on a lens: the lenses every step
      light.update(self._cheap_lenses(params, hp, aux, batch, logits, step))
    updates, opt_state = self.optimizer(hp).update(grads, state['opt_state'], params)

    def logged_row():
      if self.minimal:
        return light
      # light's values where it has them (computed outside: the same bits as
      # bare mode's rows) over the row's own.
      return {**(row_fn or self._row)(params, state['opt_state'], opt_state, grads, hp, batch,
                                      step, dropout_key, train), **light}

    if isinstance(full, bool):
      m = logged_row() if full else light
    else:
      m = jax.lax.cond(full, logged_row, lambda: row)
    bad = ~(jnp.isfinite(loss) & jnp.isfinite(light['grad_norm']))
    frozen = bad | (state['diverged_step'] >= 0) | ~jnp.asarray(train)
    bad = bad & train
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(frozen, b, a), new, old)
    # A watched metric only the row has (lr, update_ratio/*) counts at logged
    # steps (NaN elsewhere, which no condition holds for).
    rest = {k: m[k] if isinstance(full, bool) else jnp.where(full, m[k], jnp.nan)
            for k in watched if k in m and k not in light}
    state = self._update_milestones(state, {**light, **rest}, step)
    state = {**state,
             'params': keep(jax.tree.map(jnp.add, params, updates), params),
             'opt_state': keep(opt_state, state['opt_state']),
             'diverged_step': jnp.where((state['diverged_step'] < 0) & bad, step,
                                        state['diverged_step'])}
    return state, m

  def _dropout_key(self, hp, step):
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(hp['seed']), 3), step)

  def _metrics(self, params, grads, batch, logits, aux):
    """The train metrics of one run's step: lm_metrics (loss, accuracy, per
    token class, attention entropy), gradient and weight norms."""
    return {**loss_lib.lm_metrics(logits, batch, self.task.class_names, aux,
                                  token_loss=self.task.loss),
            'grad_norm': loss_lib.global_norm(grads),
            'param_norm': loss_lib.global_norm(params),
            **loss_lib.layer_norms(nnx.to_pure_dict(params))}

  def _row(self, params, opt_before, opt_after, grads, hp, batch, step, dropout_key, train):
    """A logged step's own work, a function of its arguments alone (so that
    _chunk can trace it once, jitted, for the NaN rows' shapes and the
    step): the model's forward pass again (the logits and attention of the
    step's own pass would have to leave it every step: 29 more kernels in
    each step, its 1,000 steps 6-32% slower at 64 runs; docs/benchmarks.md),
    the train metrics, the step lenses on their schedule, lr and
    update_ratio/*. Its loss, grad_norm and watched metrics are replaced by
    the step's own (_step_run)."""
    logits, aux = self.call(params, batch['x_NxT'], dropout_key)
    m = self._metrics(params, grads, batch, logits, aux)
    if not self.lens_milestones:  # (with a milestone on a lens the step has them every step)
      m.update(self._every(step, lambda: self._cheap_lenses(params, hp, aux, batch, logits, step),
                           train))
    m['lr'] = jnp.where(train, optimizer_lib.current_lr(opt_after),
                        optimizer_lib.current_lr(opt_before))
    if self.lens.geometry:  # (the update again: it would leave the step's fusion too)
      tx = self.optimizer(hp)
      m.update(self._every(step, lambda: lenses_lib.update_ratio(
          nnx.to_pure_dict(params),
          nnx.to_pure_dict(tx.update(grads, opt_before, params)[0])), train))
    return m

  def _eval_run(self, state, hp, data, step):
    """Metrics on the eval splits and exact-match of tracked generations:
    per prompt of task.prompts (generation/<prompt>) and as the fraction right
    per bucket of task.prompt_buckets (exact/<bucket>). Bare mode: none."""
    if self.minimal:
      return state, {}
    m = {}
    model = nnx.merge(self.graphdef, state['params'])
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(hp['seed']), 2), step)
    for i, (name, source) in enumerate(self.task.evals.items()):
      def metrics(batch, name=name):
        logits, _ = model(batch['x_NxT'])
        return loss_lib.lm_metrics(logits, batch, self.task.class_names, {},
                                   prefix=f'{name}/', token_loss=self.task.loss)
      m.update(source.evaluate(metrics, data[name], jax.random.fold_in(key, i)))
    if self._prompts['track']:  # tinyjax.generation
      m.update(self._tracked_exact(model, state['params'], key))
    return self._update_milestones(state, m, step), m

  # ------------------------------------------------------ vmapped, jitted ---
  def _chunk(self, state, hp, data, start, n_steps):
    """Trains steps [start, start + n_steps) of every run; n_steps <= chunk_steps.

    Returns the new state and one metric row per log step (the metrics of the
    parameters before that step's update), stacked [groups_per_chunk, runs, ...];
    rows past n_steps are NaN. A row's eval metrics are NaN unless its step is a
    multiple of eval.every. The other steps of a log group compute only what
    milestones and the divergence check need.

    n_steps = 0 (`evaluate`): the row of step `start`, with its evaluation
    whatever the schedule, and no update. One program for both: the final
    evaluation was a second program of the same step and evaluation, as long
    to compile (~5 s of a 64-run Timmy job's CPU).
    """
    train = n_steps > 0
    # The evaluation and the logged step's row are jitted inside the chunk
    # only so that each is traced once: the NaN rows below take their shapes
    # from those traces, which the cond and the step then reuse (jit's trace
    # cache), instead of tracing them twice (the evaluation: ~2 s of a
    # tiny-llm start; the row, with the whole step around it: ~45% of Timmy's
    # chunk trace). XLA inlines the calls.
    v_eval = jax.jit(jax.vmap(self._eval_run, in_axes=(0, 0, None, None)))
    row_fn = jax.jit(self._row)
    v_steps = self._v_steps(row_fn)
    end = start + jnp.maximum(n_steps, 1)
    # The metrics a skipped step or eval reports: NaN, shaped like the real ones.
    step_t = jax.ShapeDtypeStruct((), jnp.int32)  # as s0 below: an int32 tracer (not weak)
    nan_eval = lens_plumbing.nan_like(jax.eval_shape(v_eval, state, hp, data, step_t)[1])
    nan_step = lens_plumbing.nan_like(self._row_shapes(row_fn, state, hp, data, step_t, train))

    config_eval_steps = bool(self.config.eval.get('steps', ()))

    def group(state, g):
      # int32, not weak (start may come in as a Python int): v_eval's trace
      # for the NaN rows above is then reused, not redone.
      s0 = jax.lax.convert_element_type(start + g * self.log_every, jnp.int32)
      on_schedule = (jnp.isin(s0, self.eval_steps) if config_eval_steps
                     else s0 % self.eval_every == 0)
      do_eval = (s0 < end) & (on_schedule | ~train)
      state, em = jax.lax.cond(do_eval, lambda st: v_eval(st, hp, data, s0),
                               lambda st: (st, nan_eval), state)
      # The group's steps, the first one logged: one loop over one step (one
      # compiled forward and backward pass), whose row is a branch taken at
      # i = 0. A dynamic trip count stops the group that crosses `end`.
      n = jnp.clip(end - s0, 1, self.log_every)
      state, m = jax.lax.fori_loop(
          0, n, lambda i, c: v_steps(c[0], c[1], hp, data, s0 + i, i == 0, train),
          (state, nan_step))
      return state, {**m, **em}

    # The groups that run, not all groups_per_chunk: a while loop writing each
    # row into the NaN rows (what a scan over every group lowers to, minus the
    # groups past `end`, which passed the whole state through two conds each:
    # ~0.3 s of every short chunk at 1,024 runs).
    n_groups = (end - start + self.log_every - 1) // self.log_every
    rows = jax.tree.map(lambda x: jnp.broadcast_to(x, (self.groups_per_chunk, *x.shape)),
                        {**nan_step, **nan_eval})

    def body(g, carry):
      state, rows = carry
      state, row = group(state, g)
      return state, jax.tree.map(lambda r, x: r.at[g].set(x), rows, row)
    return jax.lax.fori_loop(0, n_groups, body, (state, rows))

  def _row_shapes(self, row_fn, state, hp, data, step_t, train):
    """The shapes of the logged step's row [runs, ...]: row_fn's, traced at
    the avals the step calls it with inside vmap (a run's shapes, on the runs'
    mesh), so that the step reuses this trace. Where light has keys the row
    lacks (bare mode's row is light alone; with a milestone on a lens, the
    lenses are light's), the whole step's shapes instead."""
    if self.minimal or self.lens_milestones:
      v_row = jax.vmap(lambda st, h, d, s: self._step_run(st, h, d, s, train=train),
                       in_axes=(0, 0, None, None))
      return jax.eval_shape(v_row, state, hp, data, step_t)[1]
    n_runs = jax.tree.leaves(hp)[0].shape[0]

    def one(x):  # a run's aval as the step inside vmap sees it (its mesh too: else a new trace)
      sharding = x.aval.sharding
      sharding = sharding.update(spec=P(*sharding.spec[1:])) if sharding is not None else None
      return jax.ShapeDtypeStruct(x.shape[1:], x.dtype, weak_type=x.aval.weak_type,
                                  sharding=sharding)
    params, opt_state, hp1 = (jax.tree.map(one, t) for t in (state['params'],
                                                                state['opt_state'], hp))
    mesh = getattr(jax.tree.leaves(hp)[0].aval.sharding, 'mesh', None)
    made = lambda s: jax.ShapeDtypeStruct(  # made from a run's values: on the runs' mesh
        s.shape, s.dtype, sharding=None if mesh is None else jax.sharding.NamedSharding(mesh, P()))
    batch, key = jax.tree.map(made, jax.eval_shape(
        lambda h, s: (self._batch(data['train'], h, s), self._dropout_key(h, s)), hp1, step_t))
    # (train is weak-typed where n_steps came in as a Python int.)
    train_t = jax.ShapeDtypeStruct((), jnp.bool_, weak_type=train.aval.weak_type)
    row = jax.eval_shape(row_fn, params, opt_state, opt_state, params, hp1, batch, step_t, key,
                         train_t)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct((n_runs, *s.shape), s.dtype), row)

  def _v_steps(self, row_fn=None):
    """A step of every run, (state, row, hp, data, step, logged, train) ->
    (state, row): the row computed where `logged` (traced), else passed
    through. With length buckets, an unlogged step runs at the first bucket
    that holds the longest row of any run's batch (one length for the group:
    a per-run length would make the switch a select that runs every branch);
    a logged step at the rows' full length."""
    def at(length, can_log):
      def one(st, row, h, d, s, logged, train):
        if not can_log:  # a cut batch: never a row, the row passed through
          return self._step_run(st, h, d, s, False, length, train)[0], row
        return self._step_run(st, h, d, s, logged, length, train, row, row_fn)
      return jax.vmap(one, in_axes=(0, 0, 0, None, None, None, None))
    if not self.buckets:
      return at(None, True)
    buckets = jnp.asarray(self.buckets, jnp.int32)
    branches = [at(b, b == self.buckets[-1]) for b in self.buckets]

    def used(h, data, step):  # one past the last position a real input or target uses
      b = self._batch(data['train'], h, step)
      used_NxT = (b['valid_NxT'] > 0) | (b['mask_NxT'] > 0)
      return jnp.max(jnp.where(used_NxT, jnp.arange(used_NxT.shape[1]) + 1, 0))

    def steps(state, row, hp, data, step, logged, train):
      i = jnp.searchsorted(buckets, jax.vmap(used, in_axes=(0, None, None))(hp, data, step).max())
      i = jnp.where(logged, len(self.buckets) - 1, i)
      return jax.lax.switch(i, branches, state, row, hp, data, step, logged, train)
    return steps

  def evaluate(self, state, hp, data, step):
    """(state, the metric row [runs, ...]) at the current parameters, without
    training: the chunk for zero steps (its milestones updated by the row)."""
    state, rows = self.chunk(state, hp, data, step, 0)
    return state, {k: v[0] for k, v in final_rows(rows).items()}

  def warm_up_final(self, state, hp, data):
    """Compiles the prompts' decoding at the end of the run (on a side thread
    while training runs; tinyjax.loop.summarise decodes with it; the final
    evaluation is the chunk, compiled already). Compiles only: running it
    there would put two programs with collectives (the sampler loop's exit
    test) on the devices at once, whose order on the CPU devices can
    interleave and deadlock."""
    if self.can_decode and not self.minimal and self.task.prompts:
      self.generate.lower(*self._generate_args(
          state['params'], self.config.eval.max_new_tokens, tuple(self.task.prompts))).compile()
