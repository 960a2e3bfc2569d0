"""Lenses II (restricted LLC, Hessian spectrum, preconditioned sharpness,
essential dynamics), each against a case whose answer is known."""

import math

import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tinyjax import essential
from tinyjax import hessian
from tinyjax import restricted
from tinyjax.tasks import ConfigError


# ------------------------------------------------------- restricted LLC ---
def _parts_problem(n=1000, d=6):
  """loss = regular linear regression in `lin` (d params: lambda = d/2)
  + 0.5 E[z^2] a^4 for `quart` at its minimum a* = 0 (the model y = a^2 z
  with truth 0: K ~ a^4, lambda = 1/4, multiplicity 1)
  + nothing from `dead` (3 params the loss never reads: lambda = 0)."""
  kx, kw, kn, kz = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(kx, (n, d))
  y = x @ jax.random.normal(kw, (d,)) + jax.random.normal(kn, (n,))
  z = jax.random.normal(kz, (n,))
  w_star = {'lin': jnp.linalg.lstsq(x, y)[0], 'quart': jnp.zeros(()), 'dead': jnp.ones(3)}

  def loss(w, b):
    x, y, z = b
    return 0.5 * jnp.mean((x @ w['lin'] - y) ** 2) + 0.5 * jnp.mean((w['quart'] ** 2 * z) ** 2)
  return loss, w_star, (lambda _: (x, y, z)), n


def test_restricted_llc_of_parts_with_known_learning_coefficients():
  loss, w_star, batch, n = _parts_problem()
  masks = [(k, {j: np.full(np.shape(v), float(j == k), np.float32) for j, v in w_star.items()})
           for k in ('lin', 'quart', 'dead')]
  names, masks_p = restricted.stack(masks)
  out = jax.jit(lambda key: restricted.llc_parts(
      loss, w_star, batch, key, names, masks_p, n_beta=n / math.log(n), epsilon=3e-4,
      gamma=0.1, chains=64, draws=4000, burnin=1000))(jax.random.key(1))
  got = {k: float(out[f'llc_part/{k}']) for k in names}
  assert abs(got['lin'] - 3.0) < 0.1 * 3.0, got      # d / 2
  assert abs(got['quart'] - 0.25) < 0.1 * 0.25, got  # 1 / (2 * 2)
  assert abs(got['dead']) < 1e-3, got               # the loss never moves (float rounding)


def test_a_mask_of_ones_is_the_unrestricted_llc_bit_for_bit():
  from tinyjax import lenses
  loss, w_star, batch, n = _parts_problem(n=100)
  kw = dict(n_beta=50.0, epsilon=1e-4, gamma=1.0, chains=2, draws=20, burnin=5)
  ones = jax.tree.map(jnp.ones_like, w_star)
  a = jax.jit(lambda k: lenses.llc(loss, w_star, batch, k, **kw))(jax.random.key(3))
  b = jax.jit(lambda k: lenses.llc(loss, w_star, batch, k, mask=ones, **kw))(jax.random.key(3))
  assert float(a['llc']) == float(b['llc'])


def test_parts_of_a_transformer_partition_its_heads_and_layers():
  from flax import nnx
  from configs import timmy
  from tinyjax import model as model_lib
  cfg = timmy.get_config().model
  params = nnx.state(model_lib.build(cfg, 8, 10, nnx.Rngs(0)))
  ps = restricted.parts(params, ('layers', 'heads', 'modules', 'ov0=blocks.0.attn.v+blocks.0.attn.o'),
                        cfg.n_layers, cfg.n_heads)
  names = [n for n, _ in ps]
  assert names[:6] == ['layer0', 'layer1', 'layer0/head0', 'layer0/head1', 'layer1/head0',
                       'layer1/head1']
  size = lambda m: int(sum(np.sum(x) for x in jax.tree.leaves(m)))
  sizes = {n: size(m) for n, m in ps}
  d = cfg.d_model
  # a head: d x d/2 of each of Q, K, V and d/2 x d of O
  assert sizes['layer0/head0'] == 4 * d * d // 2
  assert sizes['layer0/head0'] + sizes['layer0/head1'] == sizes['layer0/attn'] == 4 * d * d
  assert sizes['layer0'] == sizes['layer0/attn'] + sizes['layer0/mlp']
  assert sizes['ov0'] == 2 * d * d
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert sum(sizes[k] for k in ('embed', 'layer0', 'layer1', 'unembed')) == total
  heads = [m for n, m in ps if '/head' in n and n.startswith('layer0')]
  overlap = sum(float(np.sum(a * b)) for a, b in zip(*[jax.tree.leaves(h) for h in heads]))
  assert overlap == 0.0
  with pytest.raises(ConfigError, match='lenses.llc_parts'):
    restricted.parts(params, ('neurons',), 2, 2)
  with pytest.raises(ConfigError, match='names no parameter'):
    restricted.parts(params, ('x=blocks.7',), 2, 2)


# -------------------------------------------------------- Hessian spectrum ---
def _quadratic(n=200, seed=0):
  """0.5 w^T A w on a two-leaf pytree, A = Q diag(evals) Q^T with 5 outliers
  (50, 30, 20, 12, 8), a bulk uniform on [0, 1] and 20 negatives on [-2, -1]."""
  rng = np.random.default_rng(seed)
  evals = np.concatenate([[50.0, 30.0, 20.0, 12.0, 8.0], rng.uniform(0, 1, n - 25),
                          rng.uniform(-2, -1, 20)])
  q, _ = np.linalg.qr(rng.normal(size=(n, n)))
  a = jnp.asarray(q @ np.diag(evals) @ q.T, jnp.float32)
  params = {'u': jnp.zeros(n - 50), 'v': jnp.zeros((5, 10))}

  def loss(p):
    f = ravel_pytree(p)[0]
    return 0.5 * f @ a @ f
  return loss, params, evals


def test_lanczos_top_k_of_a_quadratic_within_1e_3():
  loss, params, evals = _quadratic()
  mv, n = hessian.flat_hvp(loss, params)
  ab = jax.jit(lambda k: hessian.lanczos(mv, hessian.rademacher(k, n), 40))(jax.random.key(0))
  got = hessian.top_k(ab, 5)
  np.testing.assert_allclose(got, [50.0, 30.0, 20.0, 12.0, 8.0], rtol=1e-3)


def test_hutchinson_trace_of_a_quadratic():
  loss, params, evals = _quadratic()
  mv, n = hessian.flat_hvp(loss, params)
  tr, se = jax.jit(lambda k: hessian.hutchinson_trace(mv, n, k, 200))(jax.random.key(1))
  # Stated tolerance: 4 standard errors, and the standard error is ~4% of the
  # trace here (Var z^T A z = 2 sum_{i != j} A_ij^2).
  assert abs(float(tr) - evals.sum()) < 4 * float(se), (float(tr), evals.sum(), float(se))
  assert float(se) < 0.05 * evals.sum()


def test_slq_density_of_a_quadratic():
  loss, params, evals = _quadratic()
  mv, n = hessian.flat_hvp(loss, params)
  ab = jax.jit(lambda k: hessian.slq(mv, n, k, 16, 40))(jax.random.key(2))
  nodes, w = hessian.ritz(ab)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)  # each start: a probability
  # Moments tr(A^p)/N within 4 standard errors over the 16 starts (the
  # quadrature is exact for p < 2m; what is left is the Hutchinson error of the
  # Rademacher starts: the 5 outliers' weights are chi^2_1 / N each), and the
  # standard errors stated: under 15% (m1) and 35% (m2, outlier-dominated).
  for p, rel in ((1, 0.15), (2, 0.35)):
    want = np.mean(evals ** p)
    per_start = (w * nodes ** p).sum(-1)
    se = per_start.std() / np.sqrt(len(per_start) - 1)
    assert abs(hessian.moment(nodes, w, p) - want) < 4 * se, (p, hessian.moment(nodes, w, p), want)
    assert se < rel * want, (p, se, want)
  # Mass in bins: negatives (10%), bulk [0, 1] (87.5%), outliers (2.5%), +-0.03.
  neg = (w * (nodes < -0.5)).sum(-1).mean()
  bulk = (w * ((nodes > -0.5) & (nodes < 1.5))).sum(-1).mean()
  assert abs(neg - 20 / 200) < 0.03 and abs(bulk - 175 / 200) < 0.03, (neg, bulk)
  # The smoothed density integrates to 1 and puts the outlier at 50.
  grid = np.linspace(-5, 55, 6001)
  dens = hessian.density(nodes, w, n, grid, 0.05)
  np.testing.assert_allclose(np.trapezoid(dens, grid), 1.0, rtol=1e-3)
  rows = hessian.summaries({'hessian_lanczos_SxMx2': np.asarray(ab)[None],
                            'hessian_n': np.array([n]), 'hessian_k': np.array([3])})
  np.testing.assert_allclose(rows['hessian/top1'][0], 50.0, rtol=1e-3)
  np.testing.assert_allclose(rows['hessian/negative_mass'][0], 0.1, atol=0.03)


# ---------------------------------------------- preconditioned sharpness ---
def test_preconditioned_sharpness_is_the_dense_top_eigenvalue_of_p_inv_h():
  kx, ky, kw = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (64, 4))
  y = jax.random.normal(ky, (64, 2))
  params = {'w1': 0.5 * jax.random.normal(kw, (4, 8)), 'w2': 0.5 * jnp.ones((8, 2)),
            'b': jnp.zeros(8)}
  loss = lambda p: jnp.mean((jnp.tanh(x @ p['w1'] + p['b']) @ p['w2'] - y) ** 2)
  tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-2, b1=0.9, b2=0.98, eps=1e-8,
                                             weight_decay=0.1)
  state = tx.init(params)
  @jax.jit
  def step(params, state):
    u, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, u), state
  for _ in range(7):  # a real Adam state: nu from a few steps
    params, state = step(params, state)
  p_tree, b1, lr, count = hessian.preconditioner(state, params)
  assert int(count) == 7
  assert abs(float(hessian.adam_threshold(b1, lr)) - 38 / 1e-2) < 1e-2
  mv, n = hessian.preconditioned_matvec(loss, params, p_tree)
  ab = jax.jit(lambda k: hessian.lanczos(mv, hessian.rademacher(k, n), 30))(jax.random.key(5))
  got = hessian.top_k(ab, 1)[0]
  # Dense: P^-1 H with P = sqrt(nu / (1 - b2^t)) + eps, straight from optax's state.
  flat, unravel = ravel_pytree(params)
  h = np.asarray(jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat), np.float64)
  nu = np.asarray(ravel_pytree(state.inner_state[0].nu)[0], np.float64)
  p = np.sqrt(nu / (1 - 0.98 ** 7)) + 1e-8
  want = np.max(np.linalg.eigvals(h / p[:, None]).real)
  assert n == 56 and abs(got - want) < 1e-3 * abs(want), (got, want)
  assert hessian.preconditioner(optax.sgd(0.1).init(params), params) is None


# ---------------------------------------------------- essential dynamics ---
def test_essential_dynamics_finds_the_turn_of_an_l_shaped_trajectory():
  rng = np.random.default_rng(0)
  u, v = np.linalg.qr(rng.normal(size=(50, 2)))[0].T   # two orthonormal directions
  t = np.arange(21, dtype=float)
  x = np.where(t[:, None] <= 10, t[:, None] * u, 10 * u + (t[:, None] - 10) * v)
  x = x + 3.0  # an offset the PCA centres away
  scores, comps, explained = essential.trajectory_pca(x, 3)
  np.testing.assert_allclose(explained[:2].sum(), 1.0, atol=1e-9)
  assert explained[2] < 1e-12
  # The first two components span {u, v}.
  proj = comps[:2] @ np.stack([u, v]).T
  np.testing.assert_allclose(np.abs(np.linalg.det(proj)), 1.0, atol=1e-9)
  assert essential.cusps(scores) == [10]
  # PC1 runs along the path's long diagonal and does not turn; PC2 is the
  # arch away from that diagonal: its one extremum is the corner.
  assert essential.extrema(scores[:, 0]) == []
  assert essential.extrema(scores[:, 1]) == [10]


@pytest.mark.slow  # too long for the CI suite's 10 minutes: python -m pytest -m slow
# ------------------------------------------------------ in the program ---
def test_a_run_writes_the_new_checkpoint_lenses(tmp_path):
  import json
  import os
  from configs import timmy
  from tinyjax import train
  c = timmy.get_config('smoke')
  with c.unlocked():
    c.optimizer.update(name='adam', lr=0.01)   # Adam: the preconditioned sharpness
    c.train.update(steps=20, log_every=10, chunk_steps=10)
    c.checkpoint.update(every=10, log_spaced=False)
    c.lenses.update(llc_parts=('modules', 'heads'), llc_chains=2, llc_draws=3, llc_burnin=2,
                    hessian_lanczos=6, hessian_top_k=2, hessian_vectors=2,
                    hessian_trace_samples=2, sharpness_precond=6)
  w = str(tmp_path / 'w')
  train.train_and_evaluate(c, w, progress=False)
  rows = [json.loads(l) for l in open(os.path.join(w, 'seed=0', 'lenses.jsonl'))]
  assert [r['step'] for r in rows] == [10, 20]
  for r in rows:
    for k in ('llc_part/embed', 'llc_part/layer0/attn', 'llc_part/layer1/mlp',
              'llc_part/layer1/head1', 'llc_part/unembed', 'hessian/top1', 'hessian/top2',
              'hessian/trace', 'hessian/slq_trace', 'sharpness_precond',
              'sharpness_precond_eos'):
      assert r[k] is not None and math.isfinite(r[k]), (k, r)
    assert r['hessian/top1'] >= r['hessian/top2']
    np.testing.assert_allclose(r['sharpness_precond_threshold'], 38 / 0.01, rtol=1e-5)
    np.testing.assert_allclose(r['sharpness_precond_eos'],
                               r['sharpness_precond'] / r['sharpness_precond_threshold'], rtol=1e-5)


def test_preconditioned_sharpness_without_adam_is_one_line(tmp_path):
  from configs import timmy
  from tinyjax import train
  c = timmy.get_config('smoke')
  with c.unlocked():
    c.lenses.sharpness_precond = 10
  with pytest.raises(ConfigError, match='lenses.sharpness_precond: 10 needs Adam'):
    train.train_and_evaluate(c, str(tmp_path / 'w'), progress=False)
