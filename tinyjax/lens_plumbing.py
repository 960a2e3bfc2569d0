"""The lenses' plumbing for a Program: what a lens sees, when it runs, where its rows go.

`LensPlumbing` is the part of tinyjax.program.Program that runs the lenses
(the measurements themselves are in tinyjax.lenses, tinyjax.hessian and
tinyjax.restricted): the cheap step lenses at the logged steps, the expensive
checkpoint lenses, the LLC's sampling problem, each lens's input. `flatten_rows`
turns the stacked rows into the scalar columns the writers write.
"""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from tinyjax import extend
from tinyjax import hessian as hessian_lib
from tinyjax import lenses as lenses_lib
from tinyjax import model as model_lib
from tinyjax import optimizer as optimizer_lib
from tinyjax import restricted as restricted_lib
from tinyjax import tasks as tasks_lib
from tinyjax.tasks import ConfigError


class LensPlumbing:
  """Program's lenses (a base class of tinyjax.program.Program, which supplies
  config, task, graphdef, max_len, context, milestones, _batch, _forward,
  call, _init_run)."""

  def _init_lenses(self, config, task, abstract, abstract_params):
    """Which lenses run (ConfigError for one the optimizer cannot feed)."""
    # Lenses (tinyjax.lenses): the cheap ones in every logged step, the
    # expensive ones at checkpoints (`checkpoint_lenses`).
    self.lens = lenses_lib.settings(config)
    # [(name, fn)]: config.lenses.extra, written as lens/<name>/...
    self.extra_lenses = extend.extra_lenses(config, lenses_lib.LENSES)
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
    modular = tasks_lib.TASKS['modular']  # residue embeddings: the modular task, however named
    on = {'attention': self.lens.attention, 'probe': self.attention_model and self.lens.probe,
          'copying': self.attention_model and self.lens.copying, 'geometry': self.lens.geometry,
          'fourier': (self.lens.fourier and
                      extend.resolve('task', config.task.name, tasks_lib.TASKS) is modular),
          'icl': self.icl}
    self.step_lenses = ([(lenses_lib.LENSES[n], '') for n in lenses_lib.BUILTIN if on[n]]
                        + [(fn, f'lens/{n}/') for n, fn in self.extra_lenses])

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

  def with_init(self, hp, state=None):
    """hp plus every run's initial parameters as hp['w0'] (from `state` at
    step 0, else rebuilt from the seeds: init is deterministic), for the
    distance-from-init lens; without it the step rebuilds w0 itself each
    logged step (~30% of a Timmy run's time)."""
    if not (self.lens.geometry or self.extra_lenses):
      return hp
    return {**hp, 'w0': (state if state is not None else self.init(hp))['params']}

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

  def _every(self, step, fn, train=True):
    """fn() at the lens steps (lenses.on_schedule: multiples of lenses.every,
    with lenses.log_spaced also log_every x 2^k; 0: every logged step) and in
    the final row (train False), NaN elsewhere. The step is the same for
    every run, so this stays a branch under vmap: the skipped steps cost
    nothing."""
    ls = self.lens
    if ls.every <= self.log_every:
      return fn()
    on = lenses_lib.on_schedule(step, ls.every, self.log_every, ls.log_spaced)
    fn = jax.jit(fn)  # traced once: the NaN branch's shapes and the cond reuse the trace
    return jax.lax.cond(on | ~jnp.asarray(train), fn, lambda: nan_like(jax.eval_shape(fn)))

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


def nan_like(shapes):
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
