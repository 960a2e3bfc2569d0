"""The Hessian's spectrum at a checkpoint: Lanczos (top-k eigenvalues and, by
stochastic Lanczos quadrature, the spectral density), Hutchinson's trace, and
Adam's preconditioned sharpness (docs/lenses.md).

Anchors: PyHessian (Yao et al. 2020: power iteration / Lanczos for the top
eigenvalues, Hutchinson for the trace, SLQ for the density), Ghorbani et al.
2019 (SLQ on neural nets), Cohen et al. 2022 (arXiv 2207.14484: Adam's
preconditioned sharpness lambda_max(P^-1 H) against (2 + 2 b1) / ((1 - b1) lr)).

Everything here is written for ONE run on a flat parameter vector and vmapped
by the Program. The device part returns Lanczos's tridiagonal coefficients;
their m x m eigenproblem is solved on the host (`summaries`, called when the
lens row is written), as the OV copy score is: LAPACK's eigh is a custom call
that XLA cannot split over the sharded runs axis.
"""

from __future__ import annotations

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax


def flat_hvp(loss_fn, params):
  """(matvec(v_N) = H v, N) for loss_fn's Hessian at params, on the flat
  parameter vector (forward-over-reverse)."""
  flat, unravel = ravel_pytree(params)
  grad = jax.grad(lambda f: loss_fn(unravel(f)))
  return (lambda v: jax.jvp(grad, (flat,), (v,))[1]), flat.size


def lanczos(matvec, v0_N, m: int):
  """m steps of Lanczos with full reorthogonalisation (twice: 'twice is
  enough') from v0. Returns the tridiagonal T's diagonal and off-diagonal as
  [m, 2] (alpha_j, beta_j; beta_{m-1} is the residual norm, unused)."""
  n = v0_N.shape[0]
  q_MxN = jnp.zeros((m, n), v0_N.dtype).at[0].set(v0_N / jnp.linalg.norm(v0_N))

  def body(j, carry):
    q_MxN, ab_Mx2 = carry
    w = matvec(q_MxN[j])
    a = q_MxN[j] @ w
    w = w - q_MxN.T @ (q_MxN @ w)   # rows > j are still zero
    w = w - q_MxN.T @ (q_MxN @ w)
    b = jnp.linalg.norm(w)
    # A zero b (an invariant subspace: fewer distinct eigenvalues than m)
    # leaves the next row zero: T decouples and e1 puts no weight on it.
    nxt = jnp.where(b > 1e-30, w / jnp.maximum(b, 1e-30), 0.0)
    q_MxN = jax.lax.cond(j + 1 < m, lambda q: q.at[j + 1].set(nxt), lambda q: q, q_MxN)
    return q_MxN, ab_Mx2.at[j].set(jnp.stack([a, b]))
  _, ab_Mx2 = jax.lax.fori_loop(0, m, body, (q_MxN, jnp.zeros((m, 2), v0_N.dtype)))
  return ab_Mx2


def rademacher(key, n: int):
  return jax.random.rademacher(key, (n,), jnp.float32)


def hutchinson_trace(matvec, n: int, key, samples: int):
  """tr H ~ mean over Rademacher z of z^T H z (variance 2 sum_{i != j} H_ij^2
  per sample). Returns (mean, standard error over the samples)."""
  def one(k):
    z = rademacher(k, n)
    return z @ matvec(z)
  est_S = jax.lax.map(one, jax.random.split(key, samples))
  return est_S.mean(), est_S.std() / jnp.sqrt(jnp.maximum(samples - 1, 1))


def slq(matvec, n: int, key, vectors: int, m: int):
  """Stochastic Lanczos quadrature: Lanczos from `vectors` Rademacher starts,
  [vectors, m, 2] coefficients (nodes and weights: `ritz`)."""
  return jax.lax.map(lambda k: lanczos(matvec, rademacher(k, n), m),
                     jax.random.split(key, vectors))


def preconditioner(opt_state, params):
  """Adam's diagonal preconditioner P = sqrt(v_hat) + eps (v_hat = nu / (1 -
  b2^t)) from an optax Adam/AdamW state under inject_hyperparams, as a
  pytree like params, plus (b1, lr, count: updates so far) of that state. None for an optimizer
  without a second moment (SGD)."""
  adam = [n for n in jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(
      n, optax.ScaleByAdamState)) if isinstance(n, optax.ScaleByAdamState)]
  hyper = [n for n in jax.tree.leaves(opt_state, is_leaf=lambda n: hasattr(n, 'hyperparams'))
           if hasattr(n, 'hyperparams')]
  if not adam or not hyper:
    return None
  s, h = adam[0], hyper[0].hyperparams
  t = jnp.maximum(s.count, 1).astype(jnp.float32)
  corr = 1.0 - h['b2'] ** t
  p = jax.tree.map(lambda nu: jnp.sqrt(nu / corr) + h['eps'], s.nu)
  # nu mirrors params' tree (nnx.State): keep only the arrays, in params' order.
  p_leaves = jax.tree.leaves(p)
  assert len(p_leaves) == len(jax.tree.leaves(params)), 'Adam nu does not mirror the params'
  return (jax.tree.unflatten(jax.tree.structure(params), p_leaves), h['b1'], h['learning_rate'],
          s.count)


def preconditioned_matvec(loss_fn, params, p_tree):
  """(v -> P^-1/2 H P^-1/2 v, N): symmetric, same eigenvalues as P^-1 H."""
  hv, n = flat_hvp(loss_fn, params)
  d = 1.0 / jnp.sqrt(ravel_pytree(p_tree)[0])
  return (lambda v: d * hv(d * v)), n


def adam_threshold(b1, lr):
  """Cohen et al. 2022's edge of stability for Adam: (2 + 2 b1) / ((1 - b1) lr)
  (38 / lr at b1 = 0.9)."""
  return (2.0 + 2.0 * b1) / ((1.0 - b1) * lr)


# --------------------------------------------------------------- host ---
def ritz(ab_XxMx2):
  """(nodes [..., m], weights [..., m]) of Lanczos coefficients: T's
  eigenvalues and the squared first components of its eigenvectors (numpy)."""
  ab = np.asarray(ab_XxMx2, np.float64)
  a, b = ab[..., 0], ab[..., 1]
  m = a.shape[-1]
  t = np.zeros(ab.shape[:-2] + (m, m))
  i = np.arange(m)
  t[..., i, i] = a
  t[..., i[:-1], i[1:]] = b[..., :-1]
  t[..., i[1:], i[:-1]] = b[..., :-1]
  ok = np.isfinite(t).all((-2, -1))
  theta = np.full(t.shape[:-1], np.nan)
  w = np.full(t.shape[:-1], np.nan)
  if ok.any():
    e, u = np.linalg.eigh(t[ok])
    theta[ok], w[ok] = e, u[..., 0, :] ** 2
  return theta, w


def top_k(ab_XxMx2, k: int):
  """The k largest Ritz values (descending), [..., k]."""
  theta, _ = ritz(ab_XxMx2)
  return -np.sort(-theta, axis=-1)[..., :k]


def density(nodes_SxM, weights_SxM, n: int, grid, sigma: float):
  """SLQ spectral density on `grid`: the mean over start vectors of Gaussians
  of width sigma at the nodes, weighted (integrates to 1 over the real line;
  Ghorbani et al. 2019 eq. 8)."""
  g = np.asarray(grid)[:, None, None]
  k = np.exp(-0.5 * ((g - nodes_SxM) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
  return (k * weights_SxM).sum(-1).mean(-1)


def moment(nodes_SxM, weights_SxM, p: int):
  """SLQ estimate of tr(H^p) / N: the mean over starts of sum_j w_j theta_j^p
  (exact for p < 2m on a quadratic form, up to the Rademacher noise)."""
  return (weights_SxM * nodes_SxM ** p).sum(-1).mean(-1)


def summaries(rows: dict) -> dict:
  """Replaces the Lanczos coefficients in a lens row (arrays [..., S, m, 2])
  by scalars (host; called by lens_plumbing.flatten_rows):
    hessian/top<i>            the k largest eigenvalues (first start vector)
    hessian/slq_trace         N x SLQ's first moment (compare hessian/trace)
    hessian/slq_m2            tr(H^2) / N
    hessian/negative_mass     the spectral mass below -1e-3 x top1 (SLQ)
    sharpness_precond         lambda_max(P^-1 H) (Adam's P)
    sharpness_precond_eos     its ratio to (2 + 2 b1) / ((1 - b1) lr)
  """
  rows = dict(rows)
  if 'hessian_lanczos_SxMx2' in rows:
    ab = np.asarray(rows.pop('hessian_lanczos_SxMx2'))
    n, k = rows.pop('hessian_n'), int(np.asarray(rows.pop('hessian_k')).reshape(-1)[0])
    nodes, w = ritz(ab)
    top = -np.sort(-nodes[..., 0, :], axis=-1)
    for i in range(k):
      rows[f'hessian/top{i + 1}'] = top[..., i]
    rows['hessian/slq_trace'] = np.asarray(n) * moment(nodes, w, 1)
    rows['hessian/slq_m2'] = moment(nodes, w, 2)
    rows['hessian/negative_mass'] = (w * (nodes < -1e-3 * top[..., :1, None])).sum(-1).mean(-1)
  if 'precond_lanczos_Mx2' in rows:
    lam = top_k(rows.pop('precond_lanczos_Mx2'), 1)[..., 0]
    rows['sharpness_precond'] = lam
    rows['sharpness_precond_eos'] = lam / np.asarray(rows['sharpness_precond_threshold'])
  return rows
