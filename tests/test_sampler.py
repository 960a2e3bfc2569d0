"""The sampler: KV-cached decoding equals the full forward pass; settings do
what they say; a key reproduces; stop tokens and constraints hold."""

import importlib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinyjax import model as model_lib
from tinyjax import sampler


def _model(name, seed=0, scale=1.0):
  """A model of each family, with weights scaled up so that the argmax is far
  from ties (and attention far from uniform)."""
  cfg = importlib.import_module(f'configs.{name}').get_config('smoke').model
  vocab, max_len = 11, 12
  m = model_lib.build(cfg, vocab, max_len, nnx.Rngs(seed))
  if scale != 1.0:
    nnx.update(m, jax.tree.map(lambda a: a * scale, nnx.state(m)))
  return m, vocab, (cfg.get('max_len') or max_len) if cfg.get('positions') == 'learned' else 0


def _prompts(vocab, lengths, seed=0):
  rng = np.random.default_rng(seed)
  toks = np.zeros((len(lengths), max(lengths)), np.int32)
  for i, n in enumerate(lengths):
    toks[i, :n] = rng.integers(0, vocab, n)
  return jnp.asarray(toks), jnp.asarray(lengths, jnp.int32)


def _full_forward_greedy(model, prompt, n_new, window=0):
  """The reference: rerun the whole (cropped) sequence for every new token.
  The sequence is right-padded to one width (causal: padding after the last
  token changes nothing before it), so the forward pass compiles once."""
  seq = list(np.asarray(prompt))
  width = window or len(seq) + n_new
  fwd = _jitted_forward(model, width)
  for _ in range(n_new):
    ctx = seq[-window:] if window else seq
    logits = fwd(np.asarray([ctx + [0] * (width - len(ctx))], np.int32))
    seq.append(int(np.asarray(logits[0, len(ctx) - 1]).argmax()))
  return seq[len(prompt):]


_FORWARDS = {}


def _jitted_forward(model, width):
  key = (id(model), width)
  if key not in _FORWARDS:
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t)[0])
    _FORWARDS[key] = lambda t: f(state, t)
  return _FORWARDS[key]


@pytest.mark.parametrize('name,scale', [('timmy', 30.0), ('tiny_llm', 1.0),
                                        ('babyllm', 3.0)])
def test_cached_greedy_equals_the_full_forward_argmax(name, scale):
  model, vocab, window = _model(name, seed=1, scale=scale)
  prompts, lengths = _prompts(vocab, [1, 4, 5])
  n_new = 5
  toks, count = jax.jit(lambda p, l: sampler.sample(
      model, p, l, n_new, jax.random.key(0), sampler.GREEDY.arrays(), window=window))(
          prompts, lengths)
  assert (np.asarray(count) == n_new).all()
  for i, n in enumerate(np.asarray(lengths)):
    want = _full_forward_greedy(model, np.asarray(prompts[i, :n]), n_new, window)
    assert list(np.asarray(toks[i])) == want, (name, i)


def test_the_window_slides_past_a_learned_position_models_context():
  """tiny-llm's generate: crop to the last max_len tokens, token for token."""
  vocab, window = 11, 8  # a short window, so that the slide starts early
  m = model_lib.build(_small_learned_cfg(window), vocab, window, nnx.Rngs(3))
  prompts, lengths = _prompts(vocab, [3, 6])
  n_new = 14  # prompt + new > window for both rows
  toks, _ = sampler.sample(m, prompts, lengths, n_new, jax.random.key(0),
                           sampler.GREEDY.arrays(), window=window)
  for i, n in enumerate(np.asarray(lengths)):
    want = _full_forward_greedy(m, np.asarray(prompts[i, :n]), n_new, window)
    assert list(np.asarray(toks[i])) == want


def _small_learned_cfg(max_len):
  cfg = importlib.import_module('configs.tiny_llm').get_config('smoke').model
  with cfg.unlocked():
    cfg.max_len = max_len
  return cfg


def _logits(seed=0, p=3, v=40):
  return jax.random.normal(jax.random.key(seed), (p, v)) * 2.0


def test_top_k_never_emits_a_token_outside_the_k_best():
  logits = _logits()
  for k in (1, 3, 10):
    s = sampler.Settings(temperature=1.5, top_k=k).arrays()
    best = set()
    picks = jax.vmap(lambda key: sampler.pick(logits, key, s))(
        jax.random.split(jax.random.key(1), 400))
    for row in range(logits.shape[0]):
      best = set(np.argsort(-np.asarray(logits[row]))[:k])
      got = set(np.asarray(picks[:, row]))
      assert got <= best, (k, row)
      if k > 1:
        assert len(got) > 1  # it does sample


def test_top_p_keeps_the_smallest_nucleus():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
  s = sampler.Settings(temperature=1.0, top_p=0.7).arrays()
  picks = jax.vmap(lambda key: sampler.pick(logits, key, s))(
      jax.random.split(jax.random.key(0), 500))
  assert set(np.asarray(picks[:, 0])) == {0, 1}  # 0.5 < 0.7, then 0.5 + 0.3 >= 0.7


def test_temperature_zero_is_greedy_and_a_key_reproduces():
  logits = _logits(2)
  greedy = sampler.pick(logits, jax.random.key(0), sampler.GREEDY.arrays())
  assert (np.asarray(greedy) == np.asarray(logits).argmax(-1)).all()
  model, vocab, _ = _model('timmy', scale=10.0)
  prompts, lengths = _prompts(vocab, [2, 3])
  hot = sampler.Settings(temperature=1.0).arrays()
  jitted = jax.jit(lambda key: sampler.sample(model, prompts, lengths, 20, key, hot)[0])
  run = lambda seed: np.asarray(jitted(jax.random.key(seed)))
  assert (run(7) == run(7)).all()
  assert (run(7) != run(8)).any()


def test_greedy_compiles_the_argmax_alone_and_picks_what_the_traced_settings_pick():
  logits = _logits(2)
  key = jax.random.key(0)
  # Any temperature-0 settings are greedy (k and p do not matter): None.
  assert sampler.Settings(temperature=0.0, top_k=5, top_p=0.5).arrays() is None
  cold = {'temperature': np.float32(0.0), 'top_k': np.int32(5), 'top_p': np.float32(0.5)}
  allowed = jnp.arange(logits.shape[-1])[None, :] % 3 == 0
  for mask in (None, jnp.broadcast_to(allowed, logits.shape)):
    assert (np.asarray(sampler.pick(logits, key, None, mask))
            == np.asarray(sampler.pick(logits, key, cold, mask))).all()
  text = lambda s: jax.jit(lambda l: sampler.pick(l, key, s)).lower(logits).as_text()
  assert 'stablehlo.sort' not in text(None)
  assert 'stablehlo.sort' in text(cold)


def test_a_stop_token_ends_a_row_and_is_repeated():
  model, vocab, _ = _model('timmy', seed=4, scale=30.0)
  prompts, lengths = _prompts(vocab, [2, 3, 1])
  free, _ = sampler.sample(model, prompts, lengths, 8, jax.random.key(0),
                           sampler.GREEDY.arrays())
  stop = int(np.asarray(free)[0, 2])  # row 0's third greedy token
  toks, count = sampler.sample(model, prompts, lengths, 8, jax.random.key(0),
                               sampler.GREEDY.arrays(), stop_ids=(stop,))
  toks, count, free = np.asarray(toks), np.asarray(count), np.asarray(free)
  for r in range(3):
    hits = np.flatnonzero(free[r] == stop)
    n = hits[0] + 1 if len(hits) else 8
    assert count[r] == n
    assert (toks[r, :n] == free[r, :n]).all() and (toks[r, n:] == stop).all()


class _EvenThenOdd:
  """A stateful constraint: even token ids at even steps, odd at odd steps."""

  def __init__(self, vocab):
    self.parity = jnp.arange(vocab) % 2

  def init(self, n):
    return jnp.zeros((n,), jnp.int32)

  def allowed(self, step_P):
    return self.parity[None, :] == (step_P % 2)[:, None]

  def update(self, step_P, tok_P):
    return step_P + 1


@pytest.mark.parametrize('temperature,top_k', [(0.0, 0), (1.0, 0), (0.7, 3)])
def test_a_constraint_masks_every_step(temperature, top_k):
  model, vocab, _ = _model('timmy', scale=10.0)
  prompts, lengths = _prompts(vocab, [2, 4, 1])
  s = sampler.Settings(temperature, top_k).arrays()
  # One program for the three keys (eagerly, each call would trace and
  # compile the decoding loop again).
  run = jax.jit(lambda key: sampler.sample(model, prompts, lengths, 12, key, s,
                                           constraint=_EvenThenOdd(vocab))[0])
  for seed in range(3):
    toks = run(jax.random.key(seed))
    assert (np.asarray(toks) % 2 == np.arange(12) % 2).all()


def test_sampling_stacked_runs_equals_sampling_each_run():
  """sample_runs (runs vmapped inside each step) == sample of each run."""
  cfg = importlib.import_module('configs.timmy').get_config('smoke').model
  models = [model_lib.build(cfg, 11, 12, nnx.Rngs(s)) for s in range(3)]
  for m in models:
    nnx.update(m, jax.tree.map(lambda a: a * 30.0, nnx.state(m)))
  graphdef, _ = nnx.split(models[0])
  params = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(m) for m in models])
  prompts, lengths = _prompts(11, [1, 3, 2])
  s = sampler.Settings(temperature=0.8, top_k=4).arrays()
  key = jax.random.key(5)
  stacked, count = sampler.sample_runs(lambda p: nnx.merge(graphdef, p), params, prompts,
                                       lengths, 9, key, s, stop_ids=(3,))
  one_run = jax.jit(lambda p: sampler.sample(nnx.merge(graphdef, p), prompts, lengths, 9, key,
                                             s, stop_ids=(3,)))
  for r, m in enumerate(models):
    one, n = one_run(nnx.state(m))
    assert (np.asarray(stacked[r]) == np.asarray(one)).all()
    assert (np.asarray(count[r]) == np.asarray(n)).all()
