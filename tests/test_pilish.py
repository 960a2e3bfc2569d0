"""Pilish decoding (Pillmish spec section 6) and beam search: pi's digits, the
length masks, constrained sampling that always follows pi, and a beam search
whose scores are the model's own log-probabilities."""

import functools
import importlib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinyjax import model as model_lib
from tinyjax import pilish
from tinyjax import sampler
from tinyjax.tasks import ConfigError

SPEC_60 = '314159265358979323846264338327' + '950288419716939937510582097494'

# The recorded v2 sample (spec section 7): 60 words, all in Pilish.
SPEC_SAMPLE = (
    'leo a very a brave alligator in school every day '
    'after drinking something special somewhere new in the sunshine that '
    'looked so loudly that all the children had to discuss '
    'listening about everything he belonged belonged from a beautiful village '
    'a nearby crocodile who continued searching for answers right a '
    'mysterious voice whenever he discovered something strange that disturbed them')

WORDS = ('a i to he in it the cat sat Tom ran dog very said play tree jump look '
         'brave happy smile house under again little friend garden bright yellow '
         'curious wanting dancing running together sunshine elephant splashed '
         'wonderful something beautiful carefully everything mysterious discovered '
         'friendship').split()
# Never allowed: specials, punctuation, digits, mixed, non-ASCII letters, and
# an 11-letter word (no digit asks for it).
BANNED = ('[UNK]', '<|endoftext|>', '.', ',', '."', '!"', '?', "'", '3', '42', 'a1',
          'x2y', 'café', 'â€œ', 'butterflies')
# Interleaved, so that the banned ids are spread over the vocabulary.
VOCAB = tuple(t for pair in zip(WORDS, BANNED + ('',) * len(WORDS)) for t in pair if t)
V = len(VOCAB)
N_NEW = 36          # reaches pi's first 0 (word 32)
PILISH = pilish.Pilish(VOCAB, N_NEW)
SEEDS = range(8)
TEMPERATURES = (0.0, 0.7, 1.0)


def _model(seed, scale=30.0):
  """A random Timmy transformer over VOCAB, weights scaled up (peaked outputs)."""
  cfg = importlib.import_module('configs.timmy').get_config('smoke').model
  m = model_lib.build(cfg, V, 16, nnx.Rngs(seed))
  nnx.update(m, jax.tree.map(lambda a: a * scale, nnx.state(m)))
  return m


GRAPH, _ = nnx.split(_model(0))
STATES = [nnx.split(_model(s))[1] for s in SEEDS]   # same graph: one compile


def _prompts(seed):
  """Two right-padded prompts of any tokens (banned ones too: not counted)."""
  rng = np.random.default_rng(seed)
  toks = rng.integers(0, V, (2, 5)).astype(np.int32)
  toks[0, 3:] = 0
  return jnp.asarray(toks), jnp.asarray([3, 5], jnp.int32)


@jax.jit
def _sample(state, prompt_PxW, length_P, key, settings):
  return sampler.sample(nnx.merge(GRAPH, state), prompt_PxW, length_P, N_NEW, key,
                        settings, constraint=PILISH)


@jax.jit
def _logp(state, seq_BxT):
  """Unconstrained next-token log-probabilities of the full forward pass."""
  logits_BxTxV, _ = nnx.merge(GRAPH, state)(seq_BxT)
  return jax.nn.log_softmax(logits_BxTxV.astype(jnp.float32), -1)


@functools.lru_cache(maxsize=None)
def _beam(k, n_new=N_NEW):
  return jax.jit(lambda state, p, l: sampler.beam_search(
      nnx.merge(GRAPH, state), p, l, n_new, k, constraint=PILISH))


def _continued(prompt_W, n, toks_N):
  """prompt[:n] + toks, right-padded to a fixed width."""
  w = prompt_W.shape[0]
  seq = np.zeros((w + len(toks_N),), np.int32)
  seq[:n] = np.asarray(prompt_W)[:n]
  seq[n:n + len(toks_N)] = toks_N
  return seq


def _score(state, prompt_W, n, toks_N):
  """Sum of the model's unconstrained log-probabilities of toks after the prompt."""
  seq = _continued(prompt_W, n, toks_N)
  logp_TxV = np.asarray(_logp(state, jnp.asarray(seq[None]))[0])
  pos = n - 1 + np.arange(len(toks_N))
  return float(logp_TxV[pos, toks_N].sum())


@pytest.fixture(scope='module')
def runs():
  """{(seed, temperature): (prompts, lengths, tokens_PxN)} for every seed and
  temperature: 8 x 3 x 2 rows x 36 words = 1,728 constrained words."""
  out = {}
  for s in SEEDS:
    prompts, lengths = _prompts(s)
    for t in TEMPERATURES:
      toks, count = _sample(STATES[s], prompts, lengths, jax.random.key(100 + s),
                            sampler.Settings(temperature=t).arrays())
      assert (np.asarray(count) == N_NEW).all()
      out[s, t] = prompts, lengths, np.asarray(toks)
  return out


# ------------------------------------------------------------------ digits ---
def test_pi_digits_and_word_lengths():
  assert pilish.pi_digits(60) == SPEC_60
  assert pilish.pi_digits(5) == '31415'
  assert len(pilish.pi_digits(400)) == 400 and pilish.pi_digits(400)[:60] == SPEC_60
  assert pilish.word_length(0) == 10
  assert [pilish.word_length(d) for d in range(1, 10)] == list(range(1, 10))
  with pytest.raises(ValueError):
    pilish.word_length(10)


def test_length_table_marks_pure_ascii_words_by_length():
  table = pilish.length_table(VOCAB)
  assert table.shape == (11, V) and not table[0].any()
  for i, tok in enumerate(VOCAB):
    rows = set(np.flatnonzero(table[:, i]))
    assert rows == ({len(tok)} if tok in WORDS else set()), tok
  assert table[3, VOCAB.index('Tom')] and not table[4, VOCAB.index('café')]
  assert all(table[n].any() for n in range(1, 11))


def test_the_recorded_sample_is_pilish_and_a_changed_word_is_caught():
  words = SPEC_SAMPLE.split()
  assert len(words) == 60
  p = pilish.Pilish(VOCAB, 60)
  assert p.satisfied(SPEC_SAMPLE)
  assert all(ok for *_, ok in p.check(words))
  bad = list(words)
  bad[32] = 'everythin'  # 9 letters at pi's first 0
  res = p.check(bad)
  assert [i for i, *_, ok in res if not ok] == [32]
  assert res[32] == (32, 'everythin', 0, False)
  assert not p.satisfied(' '.join(bad))
  assert not p.satisfied('leo a very a brave, alligator')   # punctuation
  # Past n_words the text is free, as in decoding.
  assert pilish.Pilish(VOCAB, 3).satisfied('the a very long free tail')


def test_the_mask_follows_the_digits_then_frees_every_token():
  p = pilish.Pilish(VOCAB, 4, offset=30)  # digits 9 5 0 2
  table = pilish.length_table(VOCAB)
  allowed = np.asarray(p.allowed(jnp.arange(6, dtype=jnp.int32)))
  for i, n in enumerate([9, 5, 10, 2]):
    assert (allowed[i] == table[n]).all()
  assert allowed[4:].all()
  assert (np.asarray(p.update(p.init(3), jnp.zeros(3, jnp.int32))) == 1).all()


def test_a_vocabulary_without_10_letter_words_is_refused_at_pi_s_first_0():
  vocab = [t for t in VOCAB if len(t) != 10]
  pilish.Pilish(vocab, 32)  # digits 0..31 have no 0
  with pytest.raises(ConfigError, match=r'digit 0 \(position 32\).*10-letter word'):
    pilish.Pilish(vocab, 33)
  with pytest.raises(ConfigError, match='position 32'):
    pilish.Pilish(vocab, 1, offset=32)
  with pytest.raises(ConfigError, match=r'digit 1 \(position 1\) needs a 1-letter'):
    pilish.Pilish([t for t in VOCAB if len(t) != 1], 2)


# ------------------------------------------------------- sampling with it ---
def test_constrained_sampling_always_follows_pi(runs):
  digits = pilish.pi_digits(N_NEW)
  n_words = n_broken = 0
  for (s, t), (prompts, lengths, toks) in runs.items():
    for r in range(toks.shape[0]):
      words = [VOCAB[i] for i in toks[r]]
      assert not set(words) & set(BANNED), (s, t, words)
      lens = [len(w) for w in words]
      assert lens == [pilish.word_length(d) for d in digits], (s, t, r, words)
      assert PILISH.satisfied(' '.join(words))
      n_words += len(words)
      # The mask binds: how often the free model's favourite would break Pilish.
      seq = _continued(prompts[r], int(lengths[r]), toks[r])
      logp_TxV = np.asarray(_logp(STATES[s], jnp.asarray(seq[None]))[0])
      fav = logp_TxV[int(lengths[r]) - 1 + np.arange(N_NEW)].argmax(-1)
      n_broken += sum(len(VOCAB[f]) != n or VOCAB[f] in BANNED
                      for f, n in zip(fav, lens))
  assert n_words >= 1000
  assert n_broken > n_words // 4, n_broken  # else the test would prove little
  # Sampling differs from greedy (the temperatures do something).
  assert any((runs[s, 1.0][2] != runs[s, 0.0][2]).any() for s in SEEDS)


# ------------------------------------------------------------ beam search ---
@pytest.mark.parametrize('seed', [0, 3, 5])
def test_beam_search_scores_and_greedy(runs, seed):
  prompts, lengths, greedy = runs[seed, 0.0]
  state = STATES[seed]
  for r in range(2):
    toks1, lp1 = (np.asarray(x) for x in _beam(1)(state, prompts[r], lengths[r]))
    toks4, lp4 = (np.asarray(x) for x in _beam(4)(state, prompts[r], lengths[r]))
    assert list(toks1) == list(greedy[r]), (seed, r)
    assert lp4 >= lp1 - 1e-3, (seed, r, lp4, lp1)
    for toks, lp in ((toks1, lp1), (toks4, lp4)):
      assert PILISH.satisfied(' '.join(VOCAB[i] for i in toks))
      # The score is the full forward pass's unconstrained log-probability:
      # the cache rows followed their hypotheses.
      want = _score(state, prompts[r], int(lengths[r]), toks)
      assert np.isclose(lp, want, rtol=1e-4, atol=1e-2), (seed, r, lp, want)


def test_a_wide_enough_beam_finds_the_best_constrained_text():
  """3 words (digits 3 1 4): 6 x 2 x 6 texts; beam 12 holds every 2-word
  prefix, so it is exact. Brute force over all 72 with the forward pass."""
  state, (prompts, lengths) = STATES[2], _prompts(2)
  toks, lp = _beam(12, 3)(state, prompts[1], lengths[1])
  ids = [np.flatnonzero(pilish.length_table(VOCAB)[n]) for n in (3, 1, 4)]
  cands = np.array(np.meshgrid(*ids, indexing='ij')).reshape(3, -1).T
  assert len(cands) == 72
  n = int(lengths[1])
  seq = np.stack([_continued(prompts[1], n, c) for c in cands])
  logp_BxTxV = np.asarray(_logp(state, jnp.asarray(seq)))
  scores = logp_BxTxV[:, n - 1:n + 2][np.arange(72)[:, None], np.arange(3), cands].sum(-1)
  assert list(np.asarray(toks)) == list(cands[scores.argmax()])
  assert np.isclose(float(lp), scores.max(), rtol=1e-4, atol=1e-2)


def test_beam_search_refuses_to_pass_a_learned_window_and_stops():
  m = _model(1)
  sampler.beam_search(m, jnp.zeros((5,), jnp.int32), 5, 12, 2, window=16)  # 16 fed: fits
  with pytest.raises(ConfigError, match='context of 16'):
    sampler.beam_search(m, jnp.zeros((5,), jnp.int32), 5, 13, 2, window=16)
  # A stop token: the finished hypothesis repeats it at no further cost.
  prompt = jnp.asarray([1, 2, 3], jnp.int32)
  beam = jax.jit(lambda stop_ids: sampler.beam_search(m, prompt, 3, 6, 3, stop_ids=stop_ids),
                 static_argnums=0)
  toks, lp = beam(())
  stop = int(np.asarray(toks)[1])
  toks_s, lp_s = beam((stop,))
  toks_s = np.asarray(toks_s)
  first = list(toks_s).index(stop)
  assert (toks_s[first:] == stop).all()
  assert float(lp_s) >= float(lp) - 1e-3


def test_beam_search_reorders_a_window_mlp_cache_too():
  """babyLLM's cache is the token buffer {'tokens': [B, S]}: beam 1 = the
  sampler's constrained greedy, beam 4 scores at least as well."""
  cfg = importlib.import_module('configs.babyllm').get_config('smoke').model
  m = model_lib.build(cfg, V, 16, nnx.Rngs(4))
  nnx.update(m, jax.tree.map(lambda a: a * 3.0, nnx.state(m)))
  p = pilish.Pilish(VOCAB, 12)
  prompts, lengths = _prompts(4)
  greedy, _ = jax.jit(lambda: sampler.sample(m, prompts, lengths, 12, jax.random.key(0),
                                              sampler.GREEDY.arrays(), constraint=p))()
  beam = lambda k: jax.jit(lambda: sampler.beam_search(m, prompts[1], lengths[1], 12, k,
                                                       constraint=p))()
  (toks1, lp1), (toks4, lp4) = beam(1), beam(4)
  assert list(np.asarray(toks1)) == list(np.asarray(greedy[1]))
  assert float(lp4) >= float(lp1) - 1e-3
  assert p.satisfied(' '.join(VOCAB[i] for i in np.asarray(toks4)))
