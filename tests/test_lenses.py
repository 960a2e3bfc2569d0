"""Lenses (tinyjax.lenses): each one against a case whose answer is known."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinyjax import lenses
from tinyjax import train
from tinyjax.tasks import ConfigError


def test_llc_of_linear_regression_is_half_its_parameter_count():
  # A regular model with d parameters has learning coefficient d / 2.
  d, n = 10, 2000
  kx, kw, kn = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (n, d))
  w_true = jax.random.normal(kw, (d,))
  y = x @ w_true + jax.random.normal(kn, (n,))
  w_star = jnp.linalg.lstsq(x, y)[0]
  loss = lambda w, b: 0.5 * jnp.mean((b[0] @ w - b[1]) ** 2)  # Gaussian NLL up to a constant
  out = jax.jit(lambda k: lenses.llc(loss, w_star, lambda _: (x, y), k,
                                     n_beta=n / math.log(n), epsilon=1e-4, gamma=1.0,
                                     chains=8, draws=2000, burnin=500))(jax.random.key(1))
  assert abs(float(out['llc']) - d / 2) < 0.1 * d / 2, out
  assert float(out['llc_nan']) == 0.0


def test_power_iteration_finds_the_top_eigenvalue_of_a_quadratic():
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
  evals = np.array([7.0, 3.0, 2.0, 1.0, 0.5, -1.0])
  a = jnp.asarray(q @ np.diag(evals) @ q.T, jnp.float32)
  params = {'w': jnp.ones(4), 'v': jnp.ones(2)}  # two leaves: the pytree path too
  flat = lambda p: jnp.concatenate([p['w'], p['v']])
  lam = lenses.top_eigenvalue(lambda p: 0.5 * flat(p) @ a @ flat(p), params,
                              jax.random.key(0), 60)
  assert abs(float(lam) - 7.0) < 1e-3


def _pattern(t, fn):
  """Attention weights [1 layer, 1 row, 1 head, T, T], row q = fn(q) (a key)."""
  a = np.zeros((1, 1, 1, t, t), np.float32)
  for q in range(t):
    a[0, 0, 0, q, fn(q)] = 1.0
  return jnp.asarray(a)


def test_hand_built_attention_patterns_score_what_they_are():
  l = 5
  t = 1 + 2 * l
  prev = lenses.pattern_scores(_pattern(t, lambda q: max(q - 1, 0)), l)
  assert float(prev['probe/prev_token_LxH'][0, 0]) == 1.0
  assert float(prev['probe/induction_LxH'][0, 0]) == 0.0
  # Induction head: the query x_i in the repeat (position L+i) attends to
  # position i+1, the token after x_i's first copy.
  ind = lenses.pattern_scores(_pattern(t, lambda q: q - l + 1 if q > l and q < 2 * l else 0), l)
  assert float(ind['probe/induction_LxH'][0, 0]) == 1.0
  assert float(ind['probe/duplicate_LxH'][0, 0]) == 0.0
  dup = lenses.pattern_scores(_pattern(t, lambda q: q - l if q > l else 0), l)
  assert float(dup['probe/duplicate_LxH'][0, 0]) == 1.0
  # Uniform causal attention: the previous-token score is mean_q 1/(q+1).
  uni = np.tril(np.ones((t, t), np.float32))
  uni /= uni.sum(1, keepdims=True)
  got = lenses.pattern_scores(jnp.asarray(uni)[None, None, None], l)
  want = np.mean([1 / (q + 1) for q in range(1, t)])
  np.testing.assert_allclose(float(got['probe/prev_token_LxH'][0, 0]), want, rtol=1e-6)


def test_normalized_entropy_is_1_for_uniform_and_0_for_one_hot_attention():
  t = 8
  q = np.arange(t)
  uniform_ent = np.log(q + 1.0)[None, None, None]   # [L, B, H, T]
  one_hot_ent = np.zeros((1, 1, 1, t))
  first = (1.0 / (q + 1))[None, None, None]
  valid = np.ones((1, t), np.float32)
  u = lenses.attention_stats(jnp.asarray(uniform_ent), jnp.asarray(first), valid)
  o = lenses.attention_stats(jnp.asarray(one_hot_ent), jnp.ones((1, 1, 1, t)), valid)
  np.testing.assert_allclose(float(u['attention_entropy_norm_LxH'][0, 0]), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(u['attention_first_LxH'][0, 0]),
                             np.mean(1 / (q[1:] + 1)), rtol=1e-6)
  assert float(o['attention_entropy_norm_LxH'][0, 0]) == 0.0
  assert float(o['attention_sink_rate']) == 1.0 and float(u['attention_sink_rate']) == 0.0


@pytest.mark.parametrize('sign', [1.0, -1.0])
def test_a_head_that_copies_scores_1_and_one_that_suppresses_scores_minus_1(sign):
  from flax import nnx
  from configs import timmy
  cfg = timmy.get_config().model
  with cfg.unlocked():
    cfg.update(n_layers=1, n_heads=1, tie_embeddings=True)
  model = nnx.merge(*nnx.split(model_lib_build(cfg)))
  d = model.d_model
  model.blocks[0].attn.v.kernel[...] = jnp.eye(d)
  model.blocks[0].attn.o.kernel[...] = sign * jnp.eye(d)
  # OV circuit = sign * W_E W_E^T: its eigenvalues all have the sign.
  ov = lenses.copying_ov(model)['copying_ov_LxHxKxK']
  np.testing.assert_allclose(lenses.copying_score(ov)[0, 0], sign, rtol=1e-5)


def model_lib_build(cfg):
  from flax import nnx
  from tinyjax import model as model_lib
  return model_lib.build(cfg, 12, 10, nnx.Rngs(0))


def test_icl_score_is_late_minus_early_loss():
  t = 100
  ce = jnp.broadcast_to(jnp.linspace(3.0, 1.0, t), (4, t))  # loss falls along the context
  m = lenses.icl(ce, jnp.ones((4, t)))
  early = np.linspace(3.0, 1.0, t)[5:15].mean()
  late = np.linspace(3.0, 1.0, t)[90:].mean()
  np.testing.assert_allclose(float(m['icl_score']), late - early, rtol=1e-5)
  assert float(m['position_loss/0']) == 3.0 and float(m[f'position_loss/{t - 1}']) == 1.0


def test_a_run_logs_the_lenses_and_rebuilds_its_init_exactly(tmp_path, timmy):
  with timmy.unlocked():
    timmy.train.update(steps=20, log_every=10, chunk_steps=10)
    timmy.checkpoint.update(every=10, log_spaced=False)
    # Timmy at d_model 8 (1,200 parameters): a dense Hessian is cheap.
    timmy.model.update(d_model=8, d_mlp=16)
    timmy.lenses = dict(sharpness_iters=100, llc=True, llc_chains=2, llc_draws=5, llc_burnin=5,
                        attention_images=1, every=20)
  w = str(tmp_path / 'w')
  train.train_and_evaluate(timmy, w, progress=False)
  rows = [json.loads(l) for l in open(os.path.join(w, 'seed=0', 'metrics.jsonl'))]
  # The step rebuilds w0 from the seed; the init program is compiled at another
  # optimisation level, so the two agree to float rounding, not bit for bit.
  assert rows[0]['step'] == 0 and rows[0]['dist_init_rel/embed'] < 1e-6
  assert rows[2]['dist_init_rel/embed'] > 1e-3 and rows[0]['update_ratio/embed'] > 0
  for name in ('attention_entropy_norm/layer0/head0', 'probe/induction/layer1/head1',
               'copying/layer0/head0', 'attention_first/layer1/head0', 'dist_init/embed'):
    # lenses.every = 20: at steps 0 and 20, not at 10 (NaN is written as null).
    assert [r[name] is None for r in rows] == [False, True, False], name
  lens = [json.loads(l) for l in open(os.path.join(w, 'seed=0', 'lenses.jsonl'))]
  assert [r['step'] for r in lens] == [10, 20]  # the checkpoints
  _check_sharpness_and_llc(w, lens, timmy)
  from tensorboard.backend.event_processing import event_accumulator
  ea = event_accumulator.EventAccumulator(os.path.join(w, 'seed=0'))
  ea.Reload()
  assert 'attention_map/layer0' in ea.Tags()['images']


def test_the_lens_schedule_is_every_n_steps_plus_log_spaced_steps_and_the_final_row():
  # Timmy's default: every 50 steps and at 10 x 2^k (log_every 10).
  steps = np.arange(0, 700, 10)
  on = steps[lenses.on_schedule(steps, 50, 10, True)]
  assert on.tolist() == [0, 10, 20, 40, 50, 80, 100, 150, 160, 200, 250, 300, 320, 350, 400,
                         450, 500, 550, 600, 640, 650]
  assert steps[lenses.on_schedule(steps, 50, 10, False)].tolist() == list(range(0, 700, 50))
  assert bool(lenses.on_schedule(jnp.int32(320), 50, 10, True))  # traced as in the step
  # every not a multiple of log_every (4): the first logged step of each 50.
  steps = np.arange(0, 260, 4)
  assert steps[lenses.on_schedule(steps, 50, 4, False)].tolist() == [0, 52, 100, 152, 200, 252]


def test_a_run_on_the_lens_schedule_writes_lenses_at_its_steps_and_in_its_final_row(
    tmp_path, timmy):
  with timmy.unlocked():
    # 90 steps: the last row (90) is off the schedule; the final row is not.
    timmy.train.update(steps=90, log_every=10, chunk_steps=100)
    timmy.checkpoint.update(every=0, log_spaced=False)
    timmy.lenses.update(attention=True, copying=True, geometry=True, every=50, log_spaced=True)
  w = str(tmp_path / 'w')
  train.train_and_evaluate(timmy, w, progress=False)
  rows = [json.loads(l) for l in open(os.path.join(w, 'seed=0', 'metrics.jsonl'))]
  lensed = lambda name: [r['step'] for r in rows if r.get(name) is not None]
  # Step 90's row is the final row (the parameters after the last update).
  for name in ('attention_entropy_norm/layer0/head0', 'copying/layer1/head1', 'dist_init/embed'):
    assert lensed(name) == [0, 10, 20, 40, 50, 80, 90], name
  assert lensed('update_ratio/embed') == [0, 10, 20, 40, 50, 80]  # (no update in the final row)
  assert [r['step'] for r in rows] == list(range(0, 100, 10))  # every row logged
  final = json.load(open(os.path.join(w, 'summary.json')))['runs'][0]['final']
  assert final['step'] == 90 and final['copying/layer1/head1'] is not None
  assert final['attention_entropy_norm/layer0/head0'] is not None


def _check_sharpness_and_llc(w, lens, cfg):
  """The run's checkpoint lenses against the checkpoint's parameters."""
  import optax
  from flax import nnx
  from jax.flatten_util import ravel_pytree
  from tinyjax import restore
  prog, group, index = restore.open_run(w)
  train_split = {k: jnp.asarray(v) for k, v in prog.task.train.arrays().items()}
  seed = group.runs[index]['hparams']['seed']
  loss_fn, draw, n_beta = prog.llc_problem(prog.data)
  assert n_beta == pytest.approx(5 / math.log(5))  # devinterp's m / ln m, m = 5 rows
  _, unravel = ravel_pytree(jax.tree.map(lambda x: jnp.asarray(x[0]),
                                         restore.load_params(w, prog, group, index)[1]))

  def loss(f):  # Timmy trains full batch: the masked mean CE over every row
    logits = nnx.merge(prog.graphdef, unravel(f))(train_split['x_NxT'])[0]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, train_split['y_NxT'])
    return (ce * train_split['mask_NxT']).sum() / train_split['mask_NxT'].sum()
  hessian = jax.jit(jax.hessian(loss))
  llc = jax.jit(lambda p, k: lenses.llc(loss_fn, p, draw, k, n_beta, 1e-3, 100.0, 2, 5, 5))
  for row in lens:
    _, params = restore.load_params(w, prog, group, index, row['step'])
    params = jax.tree.map(lambda x: jnp.asarray(x[0]), params)
    flat, _ = ravel_pytree(params)
    assert flat.size == 1200
    evals = np.linalg.eigvalsh(np.asarray(hessian(flat), np.float64))
    # Sharpness = the dense Hessian's top eigenvalue (here also the largest
    # in magnitude, which power iteration finds): a wrong batch, the wrong
    # checkpoint's weights or too few iterations would not give it.
    assert evals[-1] > abs(evals[0]), (evals[-1], evals[0])
    np.testing.assert_allclose(row['sharpness'], evals[-1], rtol=2e-3)
    lr = cfg.optimizer.lr
    np.testing.assert_allclose(row['sharpness_eos'], row['sharpness'] * lr / 2, rtol=1e-6)
    # LLC: the estimator (tested on linear regression above) at this run's
    # checkpoint, with the settings and the run's key for (seed, step): the
    # logged value must be what it gives at these weights (not the init's,
    # another checkpoint's or another run's, nor with other settings).
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 4),
                                                row['step']), 1)
    want = llc(params, key)
    for k in ('llc', 'llc_std', 'llc_below'):
      np.testing.assert_allclose(row[k], float(want[k]), rtol=1e-4, atol=1e-6, err_msg=k)
    below = row['llc_below'] * 10  # 2 chains x 5 draws
    assert row['llc_nan'] == 0.0 and abs(below - round(below)) < 1e-6


def test_an_unknown_lens_setting_is_named():
  from configs import timmy
  c = timmy.get_config()
  with c.unlocked():
    c.lenses = dict(sharpnes_iters=5)
  with pytest.raises(ConfigError, match='lenses.sharpnes_iters'):
    train.train_and_evaluate(c, '/nonexistent/never', progress=False)


def test_induction_rows_repeat_their_random_half_and_classes_follow_position():
  from configs import induction
  from tinyjax import tasks
  cfg = induction.get_config('smoke').task
  task = tasks.build(cfg)
  s = task.train
  for r in range(5):
    n = int(s.mask_NxT[r].sum()) + 1           # tokens in the row
    row = np.concatenate([s.x_NxT[r, :1], s.y_NxT[r, :n - 1]])
    half = n // 2
    assert cfg.min_length <= half <= cfg.length and n == 2 * half
    assert (row[:half] == row[half:]).all()
    cls = s.cls_NxT[r, :n - 1]                 # target j is row[j + 1]
    assert (cls[:half - 1] == 0).all() and (cls[half - 1:] == 1).all()
    assert (s.mask_NxT[r, n - 1:] == 0).all()
  for p in task.prompts:                       # the rest of the repeat is expected
    assert (p + task.expected[p])[:len(p + task.expected[p]) // 2] * 2 == p + task.expected[p]
  with pytest.raises(ConfigError, match='task.min_length'):
    tasks.build(_with(cfg, min_length=1))


def _with(cfg, **kw):
  c = cfg.copy_and_resolve_references()
  with c.unlocked():
    c.update(kw)
  return c


def test_fourier_measures_on_a_grid_made_of_one_frequency():
  p, k = 13, 3
  assert float(lenses.gini(jnp.ones(6))) == 0.0
  np.testing.assert_allclose(float(lenses.gini(jnp.eye(6)[0])), 5 / 6, rtol=1e-6)
  # Embeddings that are cos/sin of one frequency: all their Fourier norm is at k.
  x = np.arange(p)
  emb = np.stack([np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)], 1)
  norms = np.asarray(lenses.embedding_frequency_norms(jnp.asarray(emb, jnp.float32), p))
  assert norms.argmax() == k - 1 and norms[np.arange(len(norms)) != k - 1].max() < 1e-4
  # Logits 8 cos(w_k (a + b - c)): the key frequency is k, the restricted
  # logits are the logits, and without them nothing is left (loss ln p).
  a, b = np.meshgrid(x, x, indexing='ij')
  s = (a + b).reshape(-1)
  logits = 8 * np.cos(2 * np.pi * k * (s[:, None] - x[None, :]) / p)
  assert lenses.key_frequencies(logits, p) == [k]
  answers = jnp.asarray(s % p)
  r, e = lenses.restricted_excluded_loss(jnp.asarray(logits, jnp.float32), answers,
                                         np.ones(p * p), p, [k])
  full = optax_ce(logits, s % p)
  np.testing.assert_allclose(float(r), full, rtol=1e-4)
  np.testing.assert_allclose(float(e), math.log(p), rtol=1e-4)


def optax_ce(logits, labels):
  import optax
  return float(optax.softmax_cross_entropy_with_integer_labels(
      jnp.asarray(logits, jnp.float32), jnp.asarray(labels)).mean())
