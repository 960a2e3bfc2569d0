"""Lenses: what a model's mechanism and its loss landscape look like while it
trains (../shared/specs/lenses.md). Every function takes one run's arrays; the
Program vmaps them over runs.

Cheap lenses run inside the jitted step at every logged step (`step_*`),
expensive ones at checkpoints (`sharpness`, `llc`). The config section
`lenses` switches each on or off (`settings` fills in what an older config
lacks).

Names written (per layer l and head h: `<name>/layer<l>/head<h>`):
  attention_entropy_norm_LxH  entropy of each query's attention / ln(keys it
                              may attend), mean over queries q >= 1 (1 = uniform)
  attention_entropy_norm_min  its minimum over heads
  attention_first_LxH         mass on position 0, mean over queries q >= 1
  attention_sink_rate         fraction of heads with attention_first > 0.3
  probe/prev_token_LxH        on the repeated-random-token probe
                              [t0, x1..xL, x1..xL]: mean A[q, q-1]
  probe/induction_LxH         mean A[L+i, i+1] (attends to the token after the
                              earlier copy of itself: prefix matching)
  probe/duplicate_LxH         mean A[L+i, i] (attends to the earlier copy)
  probe/induction_max/layer<l>  the best head's induction score in layer l
  probe/icl                   probe loss on the repeat minus on the first copy
  copying_LxH                 OV copy score sum(Re ev) / sum(|ev|) of the OV
                              circuit W_E W_V^h W_O^h W_U (Elhage et al.), in [-1, 1]
  dist_init/<module>          |w - w0| per module; dist_init_rel/<module> / |w0|
  update_ratio/<module>       |update| / |w| of this step's optimizer update
  icl_score                   sequences of >= 20 tokens: loss at late positions minus loss at
                              early ones (Olsson: 500th - 50th token; here the
                              last ~10% of the context minus ~T/10)
  position_loss/<p>           the training loss at token position p (log-spaced)
  fourier/embed_gini          modular tasks: Gini coefficient of the residue
                              embeddings' per-frequency norms (Nanda et al.; the
                              restricted and excluded losses need the key
                              frequencies of the end of training: replayed by
                              experiments/grokking_llc.py)
At checkpoints (lenses.jsonl and TensorBoard):
  sharpness, sharpness_eos    top Hessian eigenvalue of the training loss at the
                              step's batch (power iteration on HVPs) and its
                              ratio to 2/lr (1 = the edge of stability for GD)
  llc, llc_std, llc_below     local learning coefficient by SGLD (mean and std
                              over chains; fraction of draws below the loss at
                              w*, a health check), llc_nan
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from tinyjax import loss as loss_lib

# Metric-name prefixes of the step lenses (a milestone on one is checked every step).
PREFIXES = ('attention_entropy_norm', 'attention_first', 'attention_sink', 'probe/',
            'dist_init', 'update_ratio', 'icl_score', 'position_loss', 'fourier/')
ICL_MIN_LEN = 20  # the per-position lens needs sequences at least this long

DEFAULTS = dict(
    every=0, log_spaced=False, attention=True, probe=True, probe_len=50, probe_rows=10, copying=True,
    geometry=True, icl=True, fourier=True, sharpness_iters=0, llc=False, llc_chains=4,
    llc_draws=200, llc_burnin=200, llc_epsilon=1e-3, llc_gamma=100.0, llc_nbeta=0.0,
    llc_batch=0,
    attention_images=0, extra=(),
    # Lenses II (docs/lenses.md): restricted LLC parts, Hessian spectrum,
    # Adam's preconditioned sharpness; all off.
    llc_parts=(), hessian_lanczos=0, hessian_top_k=5, hessian_vectors=4,
    hessian_trace_samples=8, sharpness_precond=0)

# The built-in step lenses are at the end of this file (LENSES).


def on_schedule(step, every: int, log_every: int, log_spaced: bool):
  """Whether the step lenses run at logged step `step` (an int or an int
  array): the first logged step of every `every` steps (the multiples of
  `every` when it is a multiple of log_every; every logged step when
  every <= log_every), and with log_spaced also log_every x 2^k (10, 20, 40,
  80, ...: the fast early rows, as checkpoint.log_spaced)."""
  on = step % every < log_every
  if log_spaced:
    q = step // log_every
    on = on | ((step % log_every == 0) & (q > 0) & ((q & (q - 1)) == 0))
  return on


def settings(config) -> ml_collections.ConfigDict:
  """config.lenses with the defaults filled in (a config from before lenses
  had none: every cheap lens on, the expensive ones off)."""
  s = ml_collections.ConfigDict(DEFAULTS)
  if 'lenses' in config:
    s.update(dict(config.lenses))
  return s


# ------------------------------------------------------------ attention ---
def attention_stats(entropy_LxBxHxT, first_LxBxHxT, valid_BxT):
  """Normalized entropy and first-position mass per layer and head, averaged
  over the valid query positions q >= 1 (position 0 has one key)."""
  t = entropy_LxBxHxT.shape[-1]
  q_T = jnp.arange(t)
  w_BxT = valid_BxT * (q_T >= 1)[None]
  denom = jnp.maximum(w_BxT.sum(), 1.0)
  norm_T = jnp.log(jnp.maximum(q_T + 1, 2).astype(jnp.float32))
  mean = lambda x: (x * w_BxT[None, :, None, :]).sum((1, 3)) / denom
  ent_LxH = mean(entropy_LxBxHxT / norm_T)
  first_LxH = mean(first_LxBxHxT)
  return {'attention_entropy_norm_LxH': ent_LxH,
          'attention_entropy_norm_min': ent_LxH.min(),
          'attention_first_LxH': first_LxH,
          'attention_sink_rate': (first_LxH > 0.3).mean()}


def repeated_probe(vocab_size: int, length: int, rows: int, context: int, seed: int = 0):
  """[rows, 1 + 2L] int32: a first token, L random tokens, the same L again
  (Olsson et al.'s probe), with L cut so that the probe fits `context`.
  Returns (tokens, L)."""
  l = min(length, (context - 1) // 2) if context else length
  rng = np.random.default_rng(seed)
  x = rng.integers(0, vocab_size, (rows, l))
  first = rng.integers(0, vocab_size, (rows, 1))
  return np.concatenate([first, x, x], 1).astype(np.int32), l


def pattern_scores(attn_LxBxHxTxT, l: int):
  """Previous-token, induction (prefix-matching) and duplicate scores per
  layer and head of attention weights on the repeated probe with L = l."""
  a = attn_LxBxHxTxT.mean(1)  # L H T T
  t = a.shape[-1]
  q = jnp.arange(1, t)
  i = jnp.arange(1, l)                # queries L+i, i = 1..L-1
  m = {'probe/prev_token_LxH': a[..., q, q - 1].mean(-1),
       'probe/induction_LxH': a[..., l + i, i + 1].mean(-1),
       'probe/duplicate_LxH': a[..., l + jnp.arange(1, l + 1), jnp.arange(1, l + 1)].mean(-1)}
  for layer in range(a.shape[0]):  # the best head of each layer (milestones)
    m[f'probe/induction_max/layer{layer}'] = m['probe/induction_LxH'][layer].max()
  return m


def probe_icl(logits_BxTxV, tokens_BxT, l: int):
  """Loss predicting the repeat (tokens L+2..2L) minus predicting the first
  copy (tokens 2..L): negative once the model copies from context."""
  ce = loss_lib.token_ce(logits_BxTxV[:, :-1], tokens_BxT[:, 1:])
  return ce[:, l + 1:].mean() - ce[:, 1:l].mean()


def copying_ov(model):
  """Per layer and head the d_head x d_head matrix W_O^h W_U W_E W_V^h, which
  has the same nonzero eigenvalues as the vocab x vocab OV circuit
  W_E W_V^h W_O^h W_U (norms and biases left out, as in Elhage et al.).

  Its eigenvalues are taken on the host (`copying_score`, by flatten_rows when
  the row is written): LAPACK's eig is a custom call that XLA cannot split
  over the runs axis, so inside the step it would gather every run onto every
  device (and two programs doing that at once on the CPU devices deadlock)."""
  e_VxD = model.embed.embedding[...]
  u_DxV = e_VxD.T if model.tie_embeddings else model.unembed.kernel[...]
  ue_DxD = u_DxV @ e_VxD
  rows = []
  for block in model.blocks:
    a = block.attn
    d, h = e_VxD.shape[1], a.n_heads
    k = d // h
    v_HxDxK = a.v.kernel[...].reshape(d, h, k).transpose(1, 0, 2)
    o_HxKxD = a.o.kernel[...].reshape(h, k, d)
    rows.append(jnp.einsum('hkd,de,hej->hkj', o_HxKxD, ue_DxD, v_HxDxK))
  return {'copying_ov_LxHxKxK': jnp.stack(rows)}


def copying_score(ov_XxKxK) -> np.ndarray:
  """OV copy score (host, numpy) of each matrix of a stack [..., K, K] (e.g.
  per layer and head): sum(Re ev) / sum(|ev|), in [-1, 1]; 1 = the head copies
  the token it reads. NaN for a matrix with a NaN (a step without lenses,
  lenses.every; a diverged run)."""
  ov = np.asarray(ov_XxKxK, np.float64)
  out = np.full(ov.shape[:-2], np.nan)
  ok = np.isfinite(ov).all((-2, -1))
  if ok.any():
    ev = np.linalg.eigvals(ov[ok])
    out[ok] = ev.real.sum(-1) / np.maximum(np.abs(ev).sum(-1), 1e-30)
  return out


# ------------------------------------------------------------- geometry ---
def distance_from_init(params, init_params):
  """|w - w0| and |w - w0| / |w0| per module (plain dicts)."""
  m, p0 = {}, loss_lib.by_module(init_params)
  for name, p in loss_lib.by_module(params).items():
    dist = loss_lib.global_norm(jax.tree.map(jnp.subtract, p, p0[name]))
    m[f'dist_init/{name}'] = dist
    m[f'dist_init_rel/{name}'] = dist / jnp.maximum(loss_lib.global_norm(p0[name]), 1e-30)
  return m


def update_ratio(params, updates):
  """|update| / |w| per module: this step's optimizer update against the
  weights it is applied to (CS231n's rule of thumb: about 1e-3)."""
  u = loss_lib.by_module(updates)
  return {f'update_ratio/{name}': loss_lib.global_norm(u[name])
          / jnp.maximum(loss_lib.global_norm(p), 1e-30)
          for name, p in loss_lib.by_module(params).items()}


# ------------------------------------------------------------ text (ICL) ---
def positions(t: int) -> list[int]:
  """Log-spaced token positions < t at which the per-position loss is logged."""
  out = sorted({min(t - 1, int(round(2 ** (k / 2)))) - 1 for k in range(0, 40)} | {t - 1})
  return [p for p in out if 0 <= p < t]


def icl(ce_BxT, mask_BxT):
  """In-context-learning score and per-position loss of a batch of windows.
  Olsson et al. take the 500th minus the 50th token; for a context T here the
  late window is the last T/10 positions and the early one is T/10 wide
  around position T/10 (500/50 = 10)."""
  t = ce_BxT.shape[1]
  w = mask_BxT.astype(jnp.float32)
  per_pos_T = (ce_BxT * w).sum(0) / jnp.maximum(w.sum(0), 1.0)
  n_pos_T = w.sum(0)
  width = max(1, t // 10)
  lo = max(0, t // 10 - width // 2)

  def window(a, b):
    return (per_pos_T[a:b] * n_pos_T[a:b]).sum() / jnp.maximum(n_pos_T[a:b].sum(), 1.0)
  m = {'icl_score': window(t - width, t) - window(lo, lo + width)}
  for p in positions(t):
    m[f'position_loss/{p}'] = jnp.where(n_pos_T[p] > 0, per_pos_T[p], jnp.nan)
  return m


# ------------------------------------------------ expensive: checkpoints ---
def top_eigenvalue(loss_fn, params, key, iters: int):
  """The largest-magnitude eigenvalue of loss_fn's Hessian at params by power
  iteration on Hessian-vector products (forward-over-reverse)."""
  grad = jax.grad(loss_fn)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  v = jax.tree.unflatten(tree, [jax.random.normal(k, x.shape, x.dtype)
                                for k, x in zip(keys, leaves)])

  def normalize(v):
    n = loss_lib.global_norm(v)
    return jax.tree.map(lambda x: x / jnp.maximum(n, 1e-30), v)

  def body(_, carry):
    v, _ = carry
    hv = jax.jvp(grad, (params,), (v,))[1]
    lam = sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(hv)))
    return normalize(hv), lam
  _, lam = jax.lax.fori_loop(0, iters, body, (normalize(v), jnp.float32(0.0)))
  return lam


def llc(loss_fn, params, batch_fn, key, n_beta, epsilon, gamma, chains, draws, burnin,
        mask=None):
  """Local learning coefficient by SGLD (Lau et al.; devinterp's estimator),
  every chain at once (vmapped).

  loss_fn(params, batch) -> mean loss; batch_fn(key) -> a minibatch. Per chain
  c, from w* = params: w <- w - (eps/2)(n_beta grad L_B(w) + gamma (w - w*))
  + sqrt(eps) N(0, I), recording L_B at each iterate before its update;
  lambda_c = n_beta (mean of the draws after burn-in - init_loss), init_loss =
  the mean loss at w* over `chains` batches. Returns {'llc': mean over chains,
  'llc_std', 'llc_below': fraction of draws below init_loss, 'llc_nan',
  'llc_trace_D': the mean over chains of each draw's n_beta (L - init_loss)}.
  n_beta, epsilon and gamma may be traced (a calibration vmaps over them).
  mask (a pytree like params, 1 = sampled, 0 = held at w*; may be traced:
  tinyjax.restricted vmaps over masks) gives devinterp's restricted LLC of
  the masked part with the rest fixed; None = every parameter.
  """
  k_init, k_chains = jax.random.split(key)
  init_loss = jax.vmap(lambda k: loss_fn(params, batch_fn(k)))(
      jax.random.split(k_init, chains)).mean()
  grad = jax.value_and_grad(loss_fn)

  def chain(k):
    def step(w, i):
      kb, kn = jax.random.split(jax.random.fold_in(k, i))
      loss, g = grad(w, batch_fn(kb))
      leaves, tree = jax.tree.flatten(w)
      noise = jax.tree.unflatten(tree, [jax.random.normal(nk, x.shape, x.dtype) for nk, x in
                                        zip(jax.random.split(kn, len(leaves)), leaves)])
      if mask is not None:  # the rest stays at w*: no drift, no noise
        noise = jax.tree.map(jnp.multiply, noise, mask)
        g = jax.tree.map(jnp.multiply, g, mask)
      w = jax.tree.map(lambda x, gx, x0, z: x - 0.5 * epsilon * (n_beta * gx + gamma * (x - x0))
                       + jnp.sqrt(epsilon) * z, w, g, params, noise)
      return w, loss
    _, losses = jax.lax.scan(step, params, jnp.arange(burnin + draws))
    return losses[burnin:]
  draws_CxD = jax.vmap(chain)(jax.random.split(k_chains, chains))
  lam_C = n_beta * (draws_CxD.mean(1) - init_loss)
  return {'llc': lam_C.mean(), 'llc_std': lam_C.std(),
          'llc_below': (draws_CxD < init_loss).mean(),
          'llc_nan': (~jnp.isfinite(draws_CxD)).any().astype(jnp.float32),
          'llc_trace_D': n_beta * (draws_CxD.mean(0) - init_loss)}


def default_nbeta(m: int) -> float:
  """devinterp's n*beta = m / ln m, m = the samples in one loss batch."""
  return m / math.log(m) if m > 1 else 1.0


# -------------------------------------------- modular arithmetic (Nanda) ---
def fourier_basis(p: int) -> np.ndarray:
  """[p, p] orthonormal rows: constant, then cos(w_k x), sin(w_k x) for
  k = 1..(p-1)/2, w_k = 2 pi k / p (Nanda et al.'s basis over residues)."""
  x = np.arange(p)
  rows = [np.ones(p)]
  for k in range(1, (p - 1) // 2 + 1):
    rows += [np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)]
  f = np.stack(rows)
  return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)


def gini(x) -> jax.Array:
  """G = sum_ij |x_i - x_j| / (2 n sum x): 0 = spread evenly, -> 1 = one entry."""
  x = jnp.asarray(x)
  return jnp.abs(x[:, None] - x[None, :]).sum() / (2 * x.size * jnp.maximum(x.sum(), 1e-30))


def embedding_frequency_norms(embed_VxD, p: int) -> jax.Array:
  """Norm of the residue embeddings' component at each frequency k = 1..(p-1)/2."""
  c = jnp.asarray(fourier_basis(p)) @ embed_VxD[:p]      # [p, D]
  return jnp.sqrt(jnp.sum(jnp.square(c[1:].reshape(-1, 2, c.shape[1])), (1, 2)))


def _sum_directions(p: int, freqs) -> np.ndarray:
  """[p*p, 2K] unit columns cos(w_k (a+b)), sin(w_k (a+b)) over all pairs (a-major)."""
  s = (np.arange(p)[:, None] + np.arange(p)[None, :]).reshape(-1)
  cols = []
  for k in freqs:
    cols += [np.cos(2 * np.pi * k * s / p), np.sin(2 * np.pi * k * s / p)]
  d = np.stack(cols, 1)
  return (d / np.linalg.norm(d, axis=0, keepdims=True)).astype(np.float32)


def key_frequencies(logits_PPxC, p: int, share: float = 0.9) -> list[int]:
  """The frequencies k whose cos/sin(w_k (a+b)) directions carry the logits
  grid (all p*p pairs x p answers, mean over pairs removed): the fewest, by
  projected norm, that hold `share` of what all (p-1)/2 frequencies hold."""
  z = np.asarray(logits_PPxC, np.float64)
  z = z - z.mean(0, keepdims=True)
  ks = list(range(1, (p - 1) // 2 + 1))
  norms = np.array([np.sum((_sum_directions(p, [k]).T @ z) ** 2) for k in ks])
  order = np.argsort(-norms)
  cum = np.cumsum(norms[order]) / norms.sum()
  return sorted(int(ks[i]) for i in order[:int(np.searchsorted(cum, share)) + 1])


def restricted_excluded_loss(logits_PPxC, answers_PP, train_mask_PP, p: int, freqs):
  """Nanda et al.'s progress measures on the logits grid. Restricted: the loss
  of the logits' projection onto the key frequencies' cos/sin(w_k (a+b))
  directions (plus the mean over pairs), over every pair. Excluded: the loss
  of the logits with those directions removed, over the training pairs."""
  d = jnp.asarray(_sum_directions(p, freqs))
  mean = logits_PPxC.mean(0, keepdims=True)
  z = logits_PPxC - mean
  proj = d @ (d.T @ z)
  ce = lambda logits: loss_lib.token_ce(logits, answers_PP)
  restricted = ce(proj + mean).mean()
  w = jnp.asarray(train_mask_PP, jnp.float32)
  excluded = (ce(logits_PPxC - proj) * w).sum() / w.sum()
  return restricted, excluded


# ------------------------------------- the step lenses (tinyjax.extend.Lens) ---
# Each takes one run's LensInput and returns its metrics; the Program calls the
# ones its model and task have (switched by lenses.<name>), in this order, and
# `lenses.extra` names these or your own ('package.module:attr', 'file.py:attr').
def attention_lens(x):
  if 'attn_first_LxBxHxT' not in x.aux:  # a model without attention statistics
    return {}
  return attention_stats(x.aux['attn_entropy_LxBxHxT'], x.aux['attn_first_LxBxHxT'],
                         x.batch['valid_NxT'])


def probe_lens(x):
  probe = jnp.asarray(x.program.probe)
  logits_p, aux_p = x.model(probe, inspect=True)
  m = pattern_scores(aux_p['attn_LxBxHxTxT'], x.program.probe_l)
  m['probe/icl'] = probe_icl(logits_p, probe, x.program.probe_l)
  return m


def copying_lens(x):
  return copying_ov(x.model)


def geometry_lens(x):
  return distance_from_init(x.params, x.init_params)


def fourier_lens(x):
  return {'fourier/embed_gini': gini(embedding_frequency_norms(
      x.model.embed.embedding[...], x.config.task.p))}


def icl_lens(x):
  return icl(loss_lib.token_ce(x.logits, x.batch['y_NxT']), x.batch['mask_NxT'])


LENSES = {'attention': attention_lens, 'probe': probe_lens, 'copying': copying_lens,
          'geometry': geometry_lens, 'fourier': fourier_lens, 'icl': icl_lens}
BUILTIN = tuple(LENSES)  # the order their metrics are written in
