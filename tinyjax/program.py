"""The compiled training program of one group of runs.

A group is a set of runs whose arrays have the same shapes (same model, task
and batch size); they differ only in hyperparameters that are traced values:
seed, learning rate, weight decay, momentum, Adam betas, init scale, Grokfast's
alpha and lambda. Every function below is written for ONE run and `jax.vmap`-ed
over a leading `runs` axis; a single run is a group of one. The `runs` axis is
sharded over devices by the caller (tinyjax.train), so nothing here knows about
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
import numpy as np

from tinyjax import extend
from tinyjax import hessian as hessian_lib
from tinyjax import lenses as lenses_lib
from tinyjax import loss as loss_lib
from tinyjax import model as model_lib
from tinyjax import optimizer as optimizer_lib
from tinyjax import restricted as restricted_lib
from tinyjax import sampler as sampler_lib
from tinyjax import tasks as tasks_lib
from tinyjax.tasks import ConfigError

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


def hparam_arrays(runs_hparams: list[dict]) -> dict[str, np.ndarray]:
  return {k: np.asarray([h[k] for h in runs_hparams],
                        np.int32 if k == 'seed' else np.float32)
          for k in runs_hparams[0]}


class Program:
  """Jitted init / chunk / evaluate / generate for one group of runs."""

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
    abstract = extend.build_abstract(lambda: model_lib.build(
        config.model, self.vocab_size, self.max_len, nnx.Rngs(0)), config.model.name)
    self.graphdef, abstract_params = nnx.split(abstract)
    # Generation needs the model's KV-cached decoding (tinyjax.sampler).
    self.can_decode = hasattr(abstract, 'init_cache') and hasattr(abstract, 'decode')
    self.num_params = model_lib.count_params(abstract_params)
    # An eval source named 'train' (a corpus's train estimate) reads data['train'].
    self.data = {'train': task.train.arrays(),
                 **{k: s.arrays() for k, s in task.evals.items() if k != 'train'}}
    # Learned positions bound what the model can read: either generation stops
    # at the context (default) or the window slides (eval.slide_window; tiny-llm).
    learned = config.model.get('positions') == 'learned'
    self.context = (config.model.get('max_len') or self.max_len) if learned else 0
    self.window = self.context if config.eval.get('slide_window', False) else 0
    self.stop_ids = (task.vocab.eos_id,) if task.vocab.eos_id >= 0 else ()
    self.settings = sampler_lib.Settings(config.eval.get('temperature', 0.0),
                                         config.eval.get('top_k', 0),
                                         config.eval.get('top_p', 1.0))
    self._prompts = self._encode_prompts()
    if self._prompts['track'] and self._prompts['teacher'] is None and not self.can_decode:
      raise ConfigError(f'model.name {config.model.name!r}: model contract: the tracked prompts '
                        'do not fit one forward pass and the model has no init_cache/decode to '
                        'generate them; set eval.track_generations = False')
    # Lenses (tinyjax.lenses): the cheap ones in every logged step, the
    # expensive ones at checkpoints (`checkpoint_lenses`).
    self.lens = lenses_lib.settings(config)
    self.extra_lenses = extend.extra_lenses(config)  # [(name, fn)]: lens/<name>/...
    # The probe and copying lenses read a transformer's blocks (a subclass too).
    self.attention_model = isinstance(abstract, model_lib.Transformer)
    self.icl = self.lens.icl and self.max_len >= lenses_lib.ICL_MIN_LEN
    # A milestone on a lens metric (e.g. induction_step) is checked every step.
    self.lens_milestones = any(metric.startswith(lenses_lib.PREFIXES + ('lens/',))
                               for _, metric, _, _ in self.milestones)
    if self.attention_model and self.lens.probe:
      self.probe, self.probe_l = lenses_lib.repeated_probe(
          len(task.vocab), self.lens.probe_len, self.lens.probe_rows, self.context or self.max_len)
      self.lens.probe = self.probe_l >= 2  # too short a context for a repeat
    # The step lenses, in the order they are written: the built-ins this model
    # and task have (their own metric names), then config.lenses.extra's
    # (lens/<name>/<key>); every one a tinyjax.extend.Lens.
    on = {'attention': self.lens.attention, 'probe': self.attention_model and self.lens.probe,
          'copying': self.attention_model and self.lens.copying, 'geometry': self.lens.geometry,
          'fourier': (self.lens.fourier and  # residue embeddings: the modular task, however named
                      extend.resolve('task', config.task.name) is tasks_lib.TASKS['modular']),
          'icl': self.icl}
    self.step_lenses = ([(lenses_lib.LENSES[n], '') for n in lenses_lib.BUILTIN if on[n]]
                        + [(fn, f'lens/{n}/') for n, fn in self.extra_lenses])

    # init and evaluate run once per run: they are compiled at XLA's lowest
    # backend optimisation level (the threefry init of a 64-run sweep takes
    # ~8 s to compile optimised, ~1.5 s not) since their run time is nothing.
    # Not generate: 100 decoding steps of unoptimised code cost far more.
    once = {'xla_backend_optimization_level': 0}
    self.init = jax.jit(jax.vmap(self._init_run), compiler_options=once)
    self.chunk = jax.jit(self._chunk)
    # Not a corpus's evaluation either: eval_iters batches of full-size windows.
    rows = isinstance(task.train, tasks_lib.Split)
    self.evaluate = jax.jit(self._evaluate, compiler_options=once if rows else None)
    # Compiled per (n_new, constraint, beam); the settings are traced.
    self.generate = jax.jit(self._generate, static_argnums=(2, 5, 6))
    self.checkpoint_lenses = jax.jit(jax.vmap(self._checkpoint_lenses_run,
                                              in_axes=(0, 0, None, None)))
    self.has_checkpoint_lenses = bool(self.lens.sharpness_iters or self.lens.llc
                                      or (self.lens.attention_images and self.lens.probe)
                                      or self.lens.llc_parts or self.lens.hessian_lanczos
                                      or self.lens.sharpness_precond)
    if self.lens.llc_parts:  # restricted LLC: every part's 0/1 mask, stacked (data, vmapped)
      self.llc_part_names, self.llc_masks = restricted_lib.stack(restricted_lib.parts(
          abstract_params, self.lens.llc_parts, config.model.get('n_layers', 0),
          config.model.get('n_heads', 1)))
    if self.lens.sharpness_precond and config.optimizer.name not in ('adam', 'adamw'):
      raise ConfigError(f'lenses.sharpness_precond: {self.lens.sharpness_precond} needs Adam\'s '
                        f'second moment; optimizer.name is {config.optimizer.name!r} (use '
                        'sharpness_iters or hessian_lanczos)')

  # ------------------------------------------------------------ one run ---
  def _init_run(self, hp):
    key = jax.random.key(hp['seed'])
    model = model_lib.build(self.config.model, self.vocab_size, self.max_len,
                            nnx.Rngs(params=jax.random.fold_in(key, 0)))
    params = nnx.state(model)
    params = jax.tree.map(lambda p: p * hp['init_scale'], params)
    return {'params': params,
            'opt_state': optimizer_lib.make(self.config.optimizer, hp).init(params),
            # At least one slot: orbax refuses to save a zero-size array, so a
            # config without milestones could not checkpoint.
            'milestones': -jnp.ones((max(len(self.milestones), 1),), jnp.int32),
            'diverged_step': jnp.int32(-1)}

  def with_init(self, hp, state=None):
    """hp plus every run's initial parameters as hp['w0'] (from `state` at
    step 0, else rebuilt from the seeds: init is deterministic), for the
    distance-from-init lens; without it the step rebuilds w0 itself each
    logged step (~30% of a Timmy run's time)."""
    if not (self.lens.geometry or self.extra_lenses):
      return hp
    return {**hp, 'w0': (state if state is not None else self.init(hp))['params']}

  def _batch(self, data, hp, step):
    """The task's training batch for `step` (rows or stream windows), drawn
    from the run's key: no data-loader state, so resume is exact."""
    key = jax.random.fold_in(jax.random.key(hp['seed']), 1)
    return self.task.train.batch(data, key, step, self.config.train.batch_size)

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

  def _measure(self, state, hp, data, step, full=True):
    """Loss, gradients and the train metrics at the current parameters.

    full=False keeps only what every step needs (loss and grad_norm for the
    divergence check, the train metrics a milestone watches); XLA then drops
    the rest (e.g. attention entropy, norms) from the compiled step.
    """
    batch = self._batch(data['train'], hp, step)
    dropout_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(hp['seed']), 3), step)
    (loss, (logits, aux)), grads = jax.value_and_grad(self._forward, has_aux=True)(
        state['params'], batch, dropout_key)
    m = loss_lib.lm_metrics(logits, batch, self.task.class_names, aux, token_loss=self.task.loss)
    m['loss'] = loss
    m['grad_norm'] = loss_lib.global_norm(grads)
    m['param_norm'] = loss_lib.global_norm(state['params'])
    m.update(loss_lib.layer_norms(nnx.to_pure_dict(state['params'])))
    if full or self.lens_milestones:
      lens = lambda: self._cheap_lenses(state['params'], hp, aux, batch, logits, step)
      m.update(lens() if self.lens_milestones else self._every(step, lens))
    if not full:
      keep = {'loss', 'grad_norm'} | {metric for _, metric, _, _ in self.milestones}
      m = {k: v for k, v in m.items() if k in keep}
    return m, grads

  def _cheap_lenses(self, params, hp, aux, batch, logits, step):
    """The step lenses of one run at the logged steps (self.step_lenses)."""
    x = self.lens_input(params, hp, batch, step, (logits, aux))
    m = {}
    for fn, prefix in self.step_lenses:
      out = fn(x)
      m.update({f'{prefix}{k}': jnp.asarray(v, jnp.float32) for k, v in out.items()}
               if prefix else out)
    return m

  def lens_input(self, params, hp, batch, step, out=None):
    """What a lens sees of one run (tinyjax.extend.LensInput); out: the
    model's (logits, aux) on the batch, if already computed."""
    logits, aux = out if out is not None else self.call(params, batch['x_NxT'])
    w0 = lambda: nnx.to_pure_dict(hp['w0'] if 'w0' in hp else self._init_run(hp)['params'])
    return extend.LensInput(model=nnx.merge(self.graphdef, params),
                            params=nnx.to_pure_dict(params), batch=batch, logits=logits,
                            aux=aux, step=step, hp=hp, config=self.config, program=self,
                            _init=w0)

  def _every(self, step, fn):
    """fn() at the steps that are multiples of lenses.every, NaN elsewhere
    (0: every logged step). The step is the same for every run, so this
    stays a branch under vmap: the skipped steps cost nothing."""
    if self.lens.every <= self.log_every:
      return fn()
    return jax.lax.cond(step % self.lens.every == 0, fn, lambda: _nan_like(jax.eval_shape(fn)))

  def _checkpoint_lenses_run(self, state, hp, data, step):
    """The expensive lenses of one run at a checkpoint: sharpness, LLC, the
    probe's attention maps (tinyjax.lenses)."""
    lens, m = self.lens, {}
    params = state['params']
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(hp['seed']), 4), step)
    batch = self._batch(data['train'], hp, step)
    loss_fn, draw, n_beta = self.llc_problem(data)
    if lens.sharpness_iters:
      lam = lenses_lib.top_eigenvalue(lambda p: loss_fn(p, batch), params,
                                      jax.random.fold_in(key, 0), lens.sharpness_iters)
      m['sharpness'] = lam
      m['sharpness_eos'] = lam * optimizer_lib.current_lr(state['opt_state']) / 2
    if lens.llc:
      llc = lenses_lib.llc(loss_fn, params, draw, jax.random.fold_in(key, 1),
                           lens.llc_nbeta or n_beta, lens.llc_epsilon, lens.llc_gamma,
                           lens.llc_chains, lens.llc_draws, lens.llc_burnin)
      llc.pop('llc_trace_D')
      m.update(llc)
    if lens.llc_parts:  # restricted LLC of every part at once (tinyjax.restricted)
      m.update(restricted_lib.llc_parts(
          loss_fn, params, draw, jax.random.fold_in(key, 2), self.llc_part_names, self.llc_masks,
          n_beta=lens.llc_nbeta or n_beta, epsilon=lens.llc_epsilon, gamma=lens.llc_gamma,
          chains=lens.llc_chains, draws=lens.llc_draws, burnin=lens.llc_burnin))
    if lens.hessian_lanczos:  # spectrum at the step's batch; eigh of T on the host (summaries)
      hv, n = hessian_lib.flat_hvp(lambda p: loss_fn(p, batch), params)
      m['hessian_lanczos_SxMx2'] = hessian_lib.slq(hv, n, jax.random.fold_in(key, 3),
                                                   lens.hessian_vectors, min(lens.hessian_lanczos, n))
      m['hessian/trace'], m['hessian/trace_se'] = hessian_lib.hutchinson_trace(
          hv, n, jax.random.fold_in(key, 4), lens.hessian_trace_samples)
      m['hessian_n'], m['hessian_k'] = jnp.float32(n), jnp.int32(lens.hessian_top_k)
    if lens.sharpness_precond:  # lambda_max(P^-1 H), Adam's P (NaN before the first update)
      p_tree, b1, lr, count = hessian_lib.preconditioner(state['opt_state'], params)
      mv, n = hessian_lib.preconditioned_matvec(lambda p: loss_fn(p, batch), params, p_tree)
      ab = hessian_lib.lanczos(mv, hessian_lib.rademacher(jax.random.fold_in(key, 5), n),
                               min(lens.sharpness_precond, n))
      m['precond_lanczos_Mx2'] = jnp.where(count > 0, ab, jnp.nan)
      m['sharpness_precond_threshold'] = hessian_lib.adam_threshold(b1, lr)
    if lens.attention_images and self.attention_model and lens.probe:
      model = nnx.merge(self.graphdef, params)
      m['attn_image_LxHxTxT'] = model(jnp.asarray(self.probe[:1]), inspect=True)[1][
          'attn_LxBxHxTxT'][:, 0]
    return m

  def llc_problem(self, data):
    """What the LLC samples, for one run: (loss_fn(params, batch): the training
    loss without dropout, draw(key) -> a training minibatch of
    lenses.llc_batch rows (0 = train.batch_size), devinterp's default
    n*beta = m / ln m for that batch)."""
    bs = self.lens.llc_batch or self.config.train.batch_size
    draw = lambda k: self.task.train.batch(data['train'], k, 0, bs)
    m = jax.eval_shape(draw, jax.random.key(0))['x_NxT'].shape[0]
    return (lambda p, b: self._forward(p, b)[0]), draw, lenses_lib.default_nbeta(int(m))

  def _update_milestones(self, state, m, step):
    ms = state['milestones']
    for k, (_, metric, op, threshold) in enumerate(self.milestones):
      if metric in m:
        hit = OPS[op](m[metric], threshold) & (state['diverged_step'] < 0)
        ms = ms.at[k].set(jnp.where((ms[k] < 0) & hit, step, ms[k]))
    return {**state, 'milestones': ms}

  def _step_run(self, state, hp, data, step, full=True):
    m, grads = self._measure(state, hp, data, step, full)
    tx = optimizer_lib.make(self.config.optimizer, hp)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = jax.tree.map(jnp.add, state['params'], updates)
    if full:
      m['lr'] = optimizer_lib.current_lr(opt_state)
      if self.lens.geometry:
        m.update(self._every(step, lambda: lenses_lib.update_ratio(
            nnx.to_pure_dict(state['params']), nnx.to_pure_dict(updates))))
    bad = ~(jnp.isfinite(m['loss']) & jnp.isfinite(m['grad_norm']))
    frozen = bad | (state['diverged_step'] >= 0)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(frozen, b, a), new, old)
    state = self._update_milestones(state, m, step)
    state = {**state,
             'params': keep(params, state['params']),
             'opt_state': keep(opt_state, state['opt_state']),
             'diverged_step': jnp.where((state['diverged_step'] < 0) & bad, step,
                                        state['diverged_step'])}
    return state, m

  def _eval_run(self, state, hp, data, step):
    """Metrics on the eval splits and exact-match of tracked generations:
    per prompt of task.prompts (generation/<prompt>) and as the fraction right
    per bucket of task.prompt_buckets (exact/<bucket>)."""
    m = {}
    model = nnx.merge(self.graphdef, state['params'])
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(hp['seed']), 2), step)
    for i, (name, source) in enumerate(self.task.evals.items()):
      def metrics(batch, name=name):
        logits, _ = model(batch['x_NxT'])
        return loss_lib.lm_metrics(logits, batch, self.task.class_names, {},
                                   prefix=f'{name}/', token_loss=self.task.loss)
      m.update(source.evaluate(metrics, data[name], jax.random.fold_in(key, i)))
    if self._prompts['track']:
      if self._prompts['teacher'] is not None:
        t = self._prompts['teacher']
        logits, _ = model(jnp.asarray(t['x']))
        right = ((logits.argmax(-1) == t['y']) | (t['w'] == 0)).all(-1)
      else:  # its own key (greedy today, but never the eval windows' keys)
        toks = self._generate_run(state['params'], self._prompts, self._prompts['n_track'],
                                  sampler_lib.GREEDY.arrays(), jax.random.fold_in(key, 1000))
        exp, emask = self._prompts['expected'], self._prompts['expected_mask']
        right = ((toks == exp) | (emask == 0)).all(-1)
      n = len(self._tracked)
      for i, p in enumerate(self._tracked):
        m[f'generation/{p}'] = right[i].astype(jnp.float32)
      if n:
        m['generation/accuracy'] = right[:n].mean()
      for name, rows in self._buckets.items():
        m[f'exact/{name}'] = right[rows].mean()
    return self._update_milestones(state, m, step), m

  # ------------------------------------------------------ vmapped, jitted ---
  def _chunk(self, state, hp, data, start, n_steps):
    """Trains steps [start, start + n_steps) of every run; n_steps <= chunk_steps.

    Returns the new state and one metric row per log step (the metrics of the
    parameters before that step's update), stacked [groups_per_chunk, runs, ...];
    rows past n_steps are NaN. A row's eval metrics are NaN unless its step is a
    multiple of eval.every. The other steps of a log group compute only what
    milestones and the divergence check need.
    """
    v_step = jax.vmap(self._step_run, in_axes=(0, 0, None, None))
    v_light = jax.vmap(lambda st, h, d, s: self._step_run(st, h, d, s, full=False)[0],
                       in_axes=(0, 0, None, None))
    v_eval = jax.vmap(self._eval_run, in_axes=(0, 0, None, None))
    end = start + n_steps
    # The metrics a skipped step or eval reports: NaN, shaped like the real ones.
    nan_like = lambda fn: _nan_like(jax.eval_shape(fn, state, hp, data, start)[1])
    nan_eval, nan_step = nan_like(v_eval), nan_like(v_step)

    config_eval_steps = bool(self.config.eval.get('steps', ()))

    def group(state, g):
      s0 = start + g * self.log_every
      on_schedule = (jnp.isin(s0, self.eval_steps) if config_eval_steps
                     else s0 % self.eval_every == 0)
      do_eval = (s0 < end) & on_schedule
      state, em = jax.lax.cond(do_eval, lambda st: v_eval(st, hp, data, s0),
                               lambda st: (st, nan_eval), state)
      state, m = jax.lax.cond(s0 < end, lambda st: v_step(st, hp, data, s0),
                              lambda st: (st, nan_step), state)
      # The group's other steps; a dynamic trip count (not a cond per step)
      # stops the group that crosses `end`.
      n = jnp.clip(end - s0, 1, self.log_every)
      state = jax.lax.fori_loop(1, n, lambda i, st: v_light(st, hp, data, s0 + i), state)
      return state, {**m, **em}

    return jax.lax.scan(group, state, jnp.arange(self.groups_per_chunk))

  def _evaluate(self, state, hp, data, step):
    """The metric row at the current parameters, without training."""
    def one(st, h):
      m, _ = self._measure(st, h, data, step)
      m['lr'] = optimizer_lib.current_lr(st['opt_state'])
      st = self._update_milestones(st, m, step)
      st, em = self._eval_run(st, h, data, step)
      return st, {**m, **em}
    return jax.vmap(one)(state, hp)

  # --------------------------------------------------------- generation ---
  def encode_prompts(self, prompts):
    """Right-padded prompt tokens and lengths (raises ConfigError on OOV text)."""
    ids = [self.task.vocab.encode(self.task.prompt_template.replace('{prompt}', p))
           for p in prompts]
    if self.context and max(map(len, ids)) > self.context:
      raise ConfigError(f'prompt {max(prompts, key=len)[:40]!r}: {max(map(len, ids))} tokens, '
                        f'longer than the model\'s context of {self.context}')
    toks = np.zeros((len(ids), max(map(len, ids))), np.int32)
    for i, p in enumerate(ids):
      toks[i, :len(p)] = p
    return {'tokens': toks, 'lengths': np.asarray(list(map(len, ids)), np.int32)}

  def _encode_prompts(self):
    """The prompts with a known expected completion, then every bucket's
    prompts, as one batch to decode."""
    vocab, task = self.task.vocab, self.task
    self._tracked = tuple(p for p in task.prompts if p in task.expected)
    tracked = list(self._tracked)
    self._buckets = {}  # bucket name -> its slice of the tracked prompts
    for name, prompts in task.prompt_buckets.items():
      self._buckets[name] = slice(len(tracked), len(tracked) + len(prompts))
      tracked += prompts
    if not tracked:
      return {'track': False}
    out = {**self.encode_prompts(tracked),
           'track': bool(self.config.eval.track_generations and task.expected)}
    if out['track']:
      exp = [vocab.encode(task.expected[p]) + ([vocab.eos_id] if vocab.eos else [])
             for p in tracked]
      n = max(map(len, exp))
      out['n_track'] = n
      out['expected'] = np.zeros((len(exp), n), np.int32)
      out['expected_mask'] = np.zeros((len(exp), n), np.int32)
      for i, e in enumerate(exp):
        out['expected'][i, :len(e)] = e
        out['expected_mask'][i, :len(e)] = 1
      out['teacher'] = self._teacher_forced(out['tokens'], out['lengths'], exp)
    return out

  def _teacher_forced(self, tokens, lengths, expected):
    """Greedy decoding yields the expected text iff at every expected position
    the argmax given the expected prefix is the expected token; so exact match
    is one forward pass over prompt + expected (inputs x, targets y, the scored
    positions w) instead of len(expected) decoding steps. None where the
    sequence would not fit the model's context (then the eval decodes)."""
    seqs = [list(t[:n]) + list(e) for t, n, e in zip(tokens, lengths, expected)]
    width = max(map(len, seqs)) - 1
    if self.window or width > (self.context or self.max_len):
      return None
    x, y, w = (np.zeros((len(seqs), width), np.int32) for _ in range(3))
    for i, (seq, n, e) in enumerate(zip(seqs, lengths, expected)):
      x[i, :len(seq) - 1], y[i, :len(seq) - 1] = seq[:-1], seq[1:]
      w[i, n - 1:n - 1 + len(e)] = 1
    return {'x': x, 'y': y, 'w': w}

  def _generate_run(self, params, prompts, n_new, settings, key):
    """The continuation of every prompt (tinyjax.sampler); after a stop token
    only that token. [P, n_new]."""
    model = nnx.merge(self.graphdef, params)
    toks, _ = sampler_lib.sample(model, jnp.asarray(prompts['tokens']), prompts['lengths'],
                                 n_new, key, settings, self.stop_ids, self.window)
    return toks

  def generations(self, params, n_new: int, prompts=None, settings=None,
                  seed: int = 0, constraint=None, beam: int = 0,
                  select=None) -> list[dict[str, str]]:
    """Host helper: {prompt: completion text} for every run in params, with
    eval's sampler settings unless `settings` (a sampler.Settings) is given;
    optionally under a constraint (a logits-mask hook, e.g. pilish.Pilish) and
    by beam search (beam > 0) instead of sampling. `select` takes the
    tokens [R, P, n] to the host (default: all runs; tinyjax.train: the runs
    this process owns)."""
    prompts = tuple(self.task.prompts if prompts is None else prompts)
    if prompts and not self.can_decode:
      raise ConfigError(f'model.name {self.config.model.name!r}: model contract: it has no '
                        'init_cache/decode, so it cannot generate')
    if not prompts:
      return [{} for _ in range(jax.tree.leaves(params)[0].shape[0])]
    enc = self.encode_prompts(prompts)
    n_new = self.max_new_tokens(n_new, int(enc['lengths'].max()))
    settings = (settings or self.settings).arrays()
    key = jax.random.key(seed)
    toks = self.generate(params, enc, n_new, settings, key, constraint, beam)
    toks = np.asarray(toks) if select is None else select(toks)
    return [{p: self.task.vocab.decode(toks[r, i]) for i, p in enumerate(prompts)}
            for r in range(toks.shape[0])]

  def _generate(self, params, prompts, n_new, settings, key, constraint=None, beam=0):
    """Every run's continuation of every prompt: sampling (optionally under a
    constraint), or beam search per run and prompt (beam > 0). [R, P, n_new]."""
    merge = lambda p: nnx.merge(self.graphdef, p)
    tokens, lengths = jnp.asarray(prompts['tokens']), jnp.asarray(prompts['lengths'])
    if not beam:
      return sampler_lib.sample_runs(merge, params, tokens, lengths, n_new, key, settings,
                                     self.stop_ids, self.window, constraint)[0]

    def run(p):
      model = merge(p)
      return jax.vmap(lambda t, n: sampler_lib.beam_search(
          model, t, n, n_new, beam, constraint, self.context, self.stop_ids)[0])(tokens, lengths)
    return jax.vmap(run)(params)

  def warm_up_final(self, state, hp, data):
    """Compiles the end-of-run evaluation (on a side thread while training
    runs). Compiles only: running it there would put two programs with
    collectives (the sampler loop's exit test) on the devices at once, whose
    order on the CPU devices can interleave and deadlock."""
    self.evaluate.lower(state, hp, data, 0).compile()

  def max_new_tokens(self, requested: int, prompt_len: int) -> int:
    """Generation cap, within the positions a learned-position model knows
    (the last new token is predicted at position limit - 1, never fed back)."""
    if self.context and not self.window:
      return max(1, min(requested, self.context - prompt_len + 1))
    return requested


def _nan_like(shapes):
  """NaN arrays shaped like a tree of ShapeDtypeStructs (a skipped metric)."""
  return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)


def flatten_rows(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Stacked rows {name: [G, R, ...]} as one [G, R] column per scalar: a
  per-head value (a name ending in _LxH) becomes <name>/layer<l>/head<h>; the
  OV circuits become their copy scores (eigenvalues, on the host)."""
  out = {}
  for k, v in hessian_lib.summaries(rows).items():  # Lanczos coefficients -> eigenvalues
    v = np.asarray(v)
    if k == 'copying_ov_LxHxKxK':
      k, v = 'copying_LxH', lenses_lib.copying_score(v)
    if k.endswith('_LxH'):
      base = k[:-len('_LxH')]
      for l in range(v.shape[-2]):
        for h in range(v.shape[-1]):
          out[f'{base}/layer{l}/head{h}'] = v[..., l, h]
    else:
      out[k] = v
  return out
