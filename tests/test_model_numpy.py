"""Every transformer option against a NumPy forward pass written from the math.

The ONNX test checks the options too, but only where onnxruntime is
installed; this one is in the core suite. The forward below reads the weights
from the NNX state by name and uses no tinyjax code: float64, explicit loops
over layers and heads. Every weight (norm scales and biases included) is
drawn at random, so a swapped or ignored parameter changes the logits.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tinyjax import model as model_lib

V, T, D, H = 11, 9, 16, 2


def _cfg(**opts):
  base = dict(name='transformer', d_model=D, n_layers=2, n_heads=H, d_mlp=24,
              activation='relu', positions='sinusoidal', embed_scale=False,
              norm='standardize', norm_eps=1e-5, final_norm=True, attn_bias=False,
              mlp_bias=True, unembed_bias=False, tie_embeddings=False, init='normal',
              init_std=0.02, init_scale=1.0, max_len=0)
  return ml_collections.ConfigDict({**base, **opts})


def _act(kind, x):
  if kind == 'relu':
    return np.maximum(x, 0.0)
  if kind == 'gelu':  # the tanh approximation (jax.nn.gelu's default, GPT-2's)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
  if kind == 'silu':
    return x / (1.0 + np.exp(-x))
  return np.tanh(x)


def _norm(cfg, p, x):
  eps = cfg.norm_eps
  mu = x.mean(-1, keepdims=True)
  if cfg.norm == 'standardize':  # no parameters, eps added to the std
    return (x - mu) / (np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True)) + eps)
  if cfg.norm == 'layernorm':  # eps inside the root, then scale and bias
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p['ln']['scale'] + p['ln']['bias']
  if cfg.norm == 'rmsnorm':  # no centring, no bias
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * p['ln']['scale']
  return x


def _dense(p, x):
  y = x @ p['kernel']
  return y + p['bias'] if 'bias' in p else y


def numpy_forward(cfg, p, tokens):
  """logits [B, T, V] of the decoder-only transformer `cfg` with weights p."""
  b, t = tokens.shape
  x = p['embed']['embedding'][tokens]
  if cfg.embed_scale:
    x = x * math.sqrt(D)
  if cfg.positions == 'sinusoidal':  # angle = t / 10000^((i - i mod 2) / D)
    pe = np.zeros((t, D))
    for ti in range(t):
      for i in range(D):
        a = ti / 10000 ** ((i - i % 2) / D)
        pe[ti, i] = math.sin(a) if i % 2 == 0 else math.cos(a)
    x = x + pe
  elif cfg.positions == 'learned':
    x = x + p['pos_embed'][:t]
  k = D // H
  for li in range(cfg.n_layers):
    blk = list(p['blocks'].values())[li]
    h = _norm(cfg, blk.get('norm1', {}), x)
    q, kk, v = (_dense(blk['attn'][n], h) for n in 'qkv')
    heads = np.zeros((b, t, D))
    for j in range(H):
      cols = slice(j * k, (j + 1) * k)
      for bi in range(b):
        for qi in range(t):  # query qi sees keys 0..qi
          s = kk[bi, :qi + 1, cols] @ q[bi, qi, cols] / math.sqrt(k)
          w = np.exp(s - s.max())
          heads[bi, qi, cols] = (w / w.sum()) @ v[bi, :qi + 1, cols]
    x = x + _dense(blk['attn']['o'], heads)
    if cfg.d_mlp > 0:
      h = _norm(cfg, blk.get('norm2', {}), x)
      x = x + _dense(blk['mlp']['down'], _act(cfg.activation, _dense(blk['mlp']['up'], h)))
  if cfg.final_norm:
    x = _norm(cfg, p.get('final_norm', {}), x)
  if cfg.tie_embeddings:
    return x @ p['embed']['embedding'].T
  return _dense(p['unembed'], x)


# Each option value at least once; the Timmy combination (standardize,
# sinusoidal, embed_scale, relu) is in tests/test_model.py.
CASES = {
    'learned_layernorm_gelu_attn_bias_tied': dict(
        positions='learned', norm='layernorm', activation='gelu', attn_bias=True,
        tie_embeddings=True),
    'sinusoidal_rmsnorm_silu_untied_unembed_bias': dict(
        positions='sinusoidal', norm='rmsnorm', activation='silu', embed_scale=True,
        unembed_bias=True, mlp_bias=False),
    'none_standardize_tanh_no_final_norm': dict(
        positions='none', norm='standardize', activation='tanh', final_norm=False,
        attn_bias=True, attn_out_bias=False),
    'learned_no_norm_no_mlp_max_len': dict(
        positions='learned', norm='none', d_mlp=0, max_len=12, tie_embeddings=True),
    'layernorm_relu_guppylm_like': dict(
        positions='learned', norm='layernorm', activation='relu', attn_bias=True,
        attn_out_bias=True, mlp_bias=True, tie_embeddings=True, init='torch'),
}


def _random_model(cfg, seed=0):
  """The model with random weights everywhere: norm scales around 1, biases
  around 0 but not 0 (an ignored or swapped parameter then shows)."""
  m = model_lib.build(cfg, V, T, nnx.Rngs(seed))
  leaves, tree = jax.tree.flatten(nnx.to_pure_dict(nnx.state(m)))
  rng = np.random.default_rng(seed)
  params = jax.tree.unflatten(tree, [
      np.float32(rng.normal(0.0, 0.5, np.shape(l)) + np.all(np.asarray(l) == 1))
      for l in leaves])
  nnx.update(m, params)
  return m, params


def _logits(m, tokens):
  """The model's logits, jitted (eager NNX dispatches op by op: slow)."""
  graphdef, state = nnx.split(m)
  f = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t)[0])
  return np.asarray(f(state, jnp.asarray(tokens, jnp.int32)))


@pytest.mark.parametrize('name', sorted(CASES))
def test_the_model_computes_the_numpy_forward_pass(name):
  cfg = _cfg(**CASES[name])
  m, params = _random_model(cfg)
  tokens = np.random.default_rng(1).integers(0, V, (3, T))
  got = _logits(m, tokens)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  want = numpy_forward(cfg, p64, tokens)
  assert got.shape == (3, T, V) and np.abs(want).max() > 1.0
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  if cfg.positions == 'learned' and cfg.norm == 'layernorm':
    # A shorter sequence gives the same logits at its positions (causal, and
    # the learned table read from row 0); once: each length is a compilation.
    short = _logits(m, tokens[:, :4])
    np.testing.assert_allclose(short, want[:, :4], rtol=1e-4, atol=1e-4)


def test_the_numpy_forward_catches_a_wrong_option():
  """The check bites: the same weights under another option give other logits."""
  cfg = _cfg(**CASES['learned_layernorm_gelu_attn_bias_tied'])
  m, params = _random_model(cfg)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  tokens = np.random.default_rng(2).integers(0, V, (2, T))
  got = _logits(m, tokens)
  for wrong in (dict(activation='relu'), dict(norm='rmsnorm'), dict(positions='none'),
                dict(attn_bias=False)):
    case = {**CASES['learned_layernorm_gelu_attn_bias_tied'], **wrong}
    p = p64 if wrong != dict(attn_bias=False) else jax.tree.map(lambda a: a, p64)
    if 'attn_bias' in wrong:  # the same weights, the attention biases dropped
      for blk in p['blocks'].values():
        for n in 'qkvo':
          del blk['attn'][n]['bias']
    other = numpy_forward(_cfg(**case), p, tokens)
    assert np.abs(other - got).max() > 1e-2, wrong
