"""The Timmy model against the spec: size, positions, a NumPy forward, entropy."""

import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from tinyjax import model as model_lib
from tinyjax import program as program_lib
from tinyjax import tasks


def _timmy_model(cfg, seed=0):
  return model_lib.build(cfg.model, 8, 9, nnx.Rngs(seed))


def test_timmy_has_exactly_6560_parameters(timmy):
  assert model_lib.count_params(nnx.state(_timmy_model(timmy))) == 6560


def test_sinusoidal_positions_follow_the_spec():
  pe = np.asarray(model_lib.sinusoidal_positions(10, 16))
  for t in (0, 1, 3, 9):
    for i in range(16):
      pair = i - i % 2
      angle = t / 10000 ** (pair / 16)
      want = math.sin(angle) if i % 2 == 0 else math.cos(angle)
      assert abs(pe[t, i] - want) < 1e-6, (t, i)
  assert pe[0, 0] == 0.0 and pe[0, 1] == 1.0


def _numpy_forward(p, tokens):
  """The spec, written independently in NumPy (float64)."""
  g = lambda x: np.asarray(x, np.float64)

  def norm(x):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / (np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True)) + 2.2e-16)

  t = tokens.shape[1]
  pos = np.zeros((t, 16))
  for ti in range(t):
    for i in range(16):
      a = ti / 10000 ** ((i - i % 2) / 16)
      pos[ti, i] = math.sin(a) if i % 2 == 0 else math.cos(a)
  x = g(p['embed']['embedding'])[tokens] * 4.0 + pos
  for blk in p['blocks'].values():
    h = norm(x)
    q, k, v = (h @ g(blk['attn'][n]['kernel']) for n in 'qkv')
    heads = []
    for j in range(2):
      sl = slice(8 * j, 8 * j + 8)
      s = q[..., sl] @ np.swapaxes(k[..., sl], -1, -2) / math.sqrt(8)
      s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
      w = np.exp(s - s.max(-1, keepdims=True))
      w /= w.sum(-1, keepdims=True)
      heads.append(w @ v[..., sl])
    x = x + np.concatenate(heads, -1) @ g(blk['attn']['o']['kernel'])
    h = norm(x)
    up = np.maximum(h @ g(blk['mlp']['up']['kernel']) + g(blk['mlp']['up']['bias']), 0)
    x = x + up @ g(blk['mlp']['down']['kernel']) + g(blk['mlp']['down']['bias'])
  return norm(x) @ g(p['unembed']['kernel'])


def test_forward_matches_an_independent_numpy_implementation(timmy):
  m = _timmy_model(timmy, seed=3)
  params = nnx.to_pure_dict(nnx.state(m))
  # Larger weights than the init so that attention is far from uniform.
  params = jax.tree.map(lambda a: a * 40.0, params)
  nnx.update(m, params)
  task = tasks.build(timmy.task)
  logits, _ = m(jnp.asarray(task.train.x_NxT))
  want = _numpy_forward(params, task.train.x_NxT)
  np.testing.assert_allclose(np.asarray(logits), want, rtol=2e-4, atol=2e-4)


def test_attention_entropy_is_within_zero_and_ln_visible_keys(timmy):
  m = _timmy_model(timmy, seed=1)
  params = jax.tree.map(lambda a: a * 30.0, nnx.to_pure_dict(nnx.state(m)))
  nnx.update(m, params)
  tokens = jax.random.randint(jax.random.key(0), (4, 9), 0, 8)
  _, aux = m(tokens)
  ent = np.asarray(aux['attn_entropy_LxBxHxT'])
  bound = np.log(np.arange(1, 10))  # query t sees t + 1 keys
  assert (ent >= -1e-6).all()
  assert (ent <= bound + 1e-5).all()
  assert np.abs(ent[..., 0]).max() < 1e-6  # the first query sees one key
  assert (ent[..., 1:] < bound[1:] - 1e-3).any()  # not all uniform


def test_uniform_attention_has_entropy_ln_t_plus_1(timmy):
  m = _timmy_model(timmy)
  for blk in m.blocks:  # zero queries -> equal scores -> uniform attention
    blk.attn.q.kernel[...] = jnp.zeros((16, 16))
  _, aux = m(jnp.zeros((2, 9), jnp.int32))
  np.testing.assert_allclose(np.asarray(aux['attn_entropy_LxBxHxT']),
                             np.broadcast_to(np.log(np.arange(1, 10)), (2, 2, 2, 9)),
                             atol=1e-5)


def test_model_options_build_and_run(timmy):
  cfg = timmy.model
  with cfg.unlocked():
    cfg.update(positions='learned', norm='layernorm', tie_embeddings=True,
               activation='gelu', attn_bias=True)
  m = model_lib.build(cfg, 8, 9, nnx.Rngs(0))
  logits, _ = m(jnp.zeros((2, 9), jnp.int32))
  assert logits.shape == (2, 9, 8)
  names = nnx.to_pure_dict(nnx.state(m))
  assert 'unembed' not in names and 'pos_embed' in names


def test_init_scale_multiplies_the_init(timmy):
  prog = program_lib.Program(timmy, tasks.build(timmy.task))
  hp = program_lib.base_hparams(timmy)
  a = prog.init(program_lib.hparam_arrays([hp]))
  b = prog.init(program_lib.hparam_arrays([{**hp, 'init_scale': 2.0}]))
  for x, y in zip(jax.tree.leaves(a['params']), jax.tree.leaves(b['params'])):
    np.testing.assert_allclose(2 * np.asarray(x), np.asarray(y), rtol=1e-6)
