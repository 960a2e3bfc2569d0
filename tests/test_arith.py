"""The arithmetic family: babyLLM's windows and held-out pair, addy's prompt
mask and bucketed exact match, the minibatch shuffle, short runs of both."""

import collections
import dataclasses
import json

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from tests.conftest import lenses_off
from configs import addy as addy_cfg
from configs import babyllm as babyllm_cfg
from tinyjax import loss as loss_lib
from tinyjax import model as model_lib
from tinyjax import program as program_lib
from tinyjax import tasks
from tinyjax import train
from tinyjax import writer


@pytest.fixture
def baby():
  return lenses_off(babyllm_cfg.get_config())


def _tiny_addy(num_train=300):
  """addy with operands 0..99 and a one-block d_model 16 model: fast to build."""
  c = lenses_off(addy_cfg.get_config('smoke'))
  with c.unlocked():
    c.task.update(max_operand=99, num_train=num_train, num_val=50, bucket_size=5,
                  prompts=('4+4=', '33+7='))
    c.task.buckets = {'1digit': 10, '2digit': 100}
    c.eval.prompts = c.task.prompts
    c.model.update(d_model=16, n_layers=1, n_heads=2, d_mlp=32)
  return c


# ----------------------------------------------------------------- babyLLM ---
def test_babyllm_vocabulary_has_the_write_up_ids(baby):
  task = tasks.build(baby.task)
  assert len(task.vocab) == 13
  assert task.vocab.encode('1+1=2 ') == [3, 1, 3, 12, 4, 0]


def test_babyllm_trains_every_pair_but_4_plus_4(baby):
  task = tasks.build(baby.task)
  want = {f'{a}+{b}={a + b} ' for a in range(10) for b in range(10)} - {'4+4=8 '}
  assert set(task.train_lines) == want and len(task.train_lines) == 99
  assert task.train.num_rows == 99
  held = task.evals['heldout']
  assert held.num_rows == 1
  assert task.vocab.decode(np.r_[held.x_NxT[0, :1], held.y_NxT[0]], False).startswith('4+4=8 ')
  assert task.expected == {'4+4=': '8'}


def _original_pairs(lines, vocab, context=4):
  """The write-up's pairs: every `context`-token window inside a line -> next."""
  out = []
  for text in lines:
    ids = vocab.encode(text)
    for i in range(len(ids) - context):
      out.append((tuple(ids[i:i + context]), ids[i + context]))
  return out


def test_loss_mask_scores_exactly_the_original_windows(baby):
  task = tasks.build(baby.task)
  s = task.train
  ours = []
  for r, j in zip(*np.nonzero(s.mask_NxT)):
    assert j >= 3  # a full 4-token window: no padding inside
    ours.append((tuple(s.x_NxT[r, j - 3:j + 1]), int(s.y_NxT[r, j])))
  want = _original_pairs(task.train_lines, task.vocab)
  assert collections.Counter(ours) == collections.Counter(want)
  assert len(ours) == 243  # 54 one-digit answers x 2 + 45 two-digit x 3


def test_prefix_variant_scores_one_pair_per_line():
  task = tasks.build(babyllm_cfg.get_config('prefix').task)
  s = task.train
  assert s.mask_NxT.sum() == 99 and (s.mask_NxT[:, 3] == 1).all()


def test_window_mlp_sees_exactly_its_window(baby):
  m = model_lib.build(baby.model, 13, 7, nnx.Rngs(0))
  toks = jax.random.randint(jax.random.key(1), (3, 9), 0, 13)
  logits, aux = m(toks)
  assert logits.shape == (3, 9, 13) and aux == {}
  p = nnx.to_pure_dict(nnx.state(m))
  e = np.asarray(p['embed']['embedding'], np.float64)[np.asarray(toks)]
  e = np.concatenate([np.zeros((3, 3, 16)), e], 1)  # left padding: zero vectors
  win = np.concatenate([e[:, k:k + 9] for k in range(4)], -1)
  h = np.tanh(win @ np.asarray(p['hidden']['kernel']) + np.asarray(p['hidden']['bias']))
  want = h @ np.asarray(p['out']['kernel']) + np.asarray(p['out']['bias'])
  np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-4)
  # Changing the token 4 before position 8 leaves it alone; 3 before does not.
  other = toks.at[:, 4].set((toks[:, 4] + 1) % 13)
  l2, _ = m(other)
  np.testing.assert_array_equal(np.asarray(l2[:, 8]), np.asarray(logits[:, 8]))
  assert not np.allclose(np.asarray(l2[:, 7]), np.asarray(logits[:, 7]))


# -------------------------------------------------------------------- addy ---
def test_addy_splits_are_disjoint_and_buckets_in_range():
  c = _tiny_addy(num_train=2000)
  task = tasks.build(c.task)
  assert task.train_lines[0].endswith('<EOS>') and len(set(task.train_lines)) == 2000
  trained = {l.split('=')[0] for l in task.train_lines}
  v = task.evals['val']
  val = {task.vocab.decode(np.r_[v.x_NxT[r, :1], v.y_NxT[r]]).split('=')[0]
         for r in range(v.num_rows)}
  assert len(val) == 50 and not val & trained
  for name, bound in (('1digit', 10), ('2digit', 100)):
    ps = task.prompt_buckets[name]
    assert len(ps) == 5 and not {p[:-1] for p in ps} & trained
    assert all(max(map(int, p[:-1].split('+'))) < bound for p in ps)
    assert all(task.expected[p] == str(sum(map(int, p[:-1].split('+')))) for p in ps)


def test_prompt_tokens_are_unscored_and_the_loss_averages_the_rest():
  c = _tiny_addy()
  task = tasks.build(c.task)
  s = task.train
  vocab = task.vocab
  for r in range(20):
    line = vocab.encode(task.train_lines[r])
    eq = line.index(vocab.id('='))
    scored = np.nonzero(s.mask_NxT[r])[0]
    # Targets are tokens 1..: scored = the answer digits and EOS, nothing else.
    assert list(scored) == list(range(eq, len(line) - 1))
    assert [int(s.y_NxT[r, j]) for j in scored] == line[eq + 1:]
  assert (s.cls_NxT[s.mask_NxT == 0] == -1).all()
  prog = program_lib.Program(c, task)
  params = nnx.state(model_lib.build(c.model, len(vocab), task.max_len, nnx.Rngs(0)))
  batch = {k: jnp.asarray(v) for k, v in s.arrays().items()}
  loss, (logits, _) = jax.jit(prog._forward)(params, batch)
  ce = np.asarray(loss_lib.token_ce(logits, batch['y_NxT']))
  assert abs(float(loss) - ce[s.mask_NxT > 0].mean()) < 1e-5


def _lookup_params(vocab, next_of):
  """window_mlp params (context 1) whose greedy next token is next_of[token]."""
  v = len(vocab)
  out = np.full((v, v), -10.0, np.float32)
  for a, b in next_of.items():
    out[vocab.id(a), vocab.id(b)] = 10.0
  return {'embed': {'embedding': np.eye(v, dtype=np.float32)},
          'hidden': {'kernel': np.eye(v, dtype=np.float32), 'bias': np.zeros(v, np.float32)},
          'out': {'kernel': out, 'bias': np.zeros(v, np.float32)}}


@pytest.mark.parametrize('teacher_forced', [True, False])
def test_bucketed_exact_match_on_a_hand_made_case(teacher_forced):
  """Exact match by one teacher-forced pass (the default) and by decoding
  (for sequences past the context) give the same answers."""
  c = _tiny_addy()
  with c.unlocked():
    c.model = ml_collections.ConfigDict(dict(
        name='window_mlp', context=1, embed_dim=13, hidden_dim=13, activation='relu',
        embed_init_std=1.0, init_scale=1.0))
  task = tasks.build(c.task)
  # The "model" answers 2 to everything: after '=' comes '2', then EOS.
  buckets = {'a': ('1+1=', '2+2='), 'b': ('3+3=', '0+2=', '1+1=', '9+1=')}
  expected = {p: str(sum(map(int, p[:-1].split('+')))) for ps in buckets.values() for p in ps}
  task = dataclasses.replace(task, prompts=('1+1=', '9+1='), expected=expected,
                             prompt_buckets=buckets)
  prog = program_lib.Program(c, task)
  assert prog._prompts['teacher'] is not None
  if not teacher_forced:
    prog._prompts['teacher'] = None
  hp = program_lib.hparam_arrays([program_lib.base_hparams(c)])
  state = prog.init(hp)
  model = nnx.merge(prog.graphdef, jax.tree.map(lambda x: x[0], state['params']))
  nnx.update(model, _lookup_params(task.vocab, {'=': '2', '2': '<EOS>'}))
  state['params'] = jax.tree.map(lambda x: x[None], nnx.state(model))
  _, m = prog.evaluate(state, hp, prog.data, 0)
  assert float(m['exact/a'][0]) == 0.5                 # 1+1 right, 2+2 wrong
  assert float(m['exact/b'][0]) == 0.5                 # 0+2 and 1+1 of four
  assert float(m['generation/1+1='][0]) == 1.0
  assert float(m['generation/9+1='][0]) == 0.0
  assert float(m['generation/accuracy'][0]) == 0.5
  # A right answer must end there: '2' then '2' is not "2".
  nnx.update(model, _lookup_params(task.vocab, {'=': '2', '2': '2'}))
  state['params'] = jax.tree.map(lambda x: x[None], nnx.state(model))
  _, m = prog.evaluate(state, hp, prog.data, 0)
  assert float(m['exact/a'][0]) == 0.0 and float(m['exact/b'][0]) == 0.0


# ------------------------------------------------------------------ shuffle ---
@pytest.mark.parametrize('n', [1025, 3000, 100_000])
def test_shuffled_index_is_a_permutation(n):
  i = jnp.arange(n)
  a = np.asarray(tasks.shuffled_index(jax.random.key(0), i, n))
  b = np.asarray(tasks.shuffled_index(jax.random.key(1), i, n))
  assert (np.sort(a) == np.arange(n)).all() and (np.sort(b) == np.arange(n)).all()
  assert (a != b).mean() > 0.99 and abs(np.corrcoef(np.arange(n), a)[0, 1]) < 0.1


def test_minibatches_of_a_large_split_cover_an_epoch_once():
  c = _tiny_addy(num_train=2050)  # above EXACT_SHUFFLE_ROWS: the Feistel path
  with c.unlocked():
    c.train.batch_size = 100
  task = tasks.build(c.task)
  prog = program_lib.Program(c, task)
  hp = {'seed': jnp.int32(3)}
  data = {'x_NxT': jnp.arange(2050)}
  batch = jax.jit(prog._batch)
  rows = np.concatenate([np.asarray(batch(data, hp, s)['x_NxT']) for s in range(20)])
  assert len(set(rows)) == 2000  # 20 batches of one epoch: no repeats
  nxt = np.asarray(batch(data, hp, 20)['x_NxT'])
  assert len(set(nxt) & set(rows[:100])) < 100  # the next epoch is reshuffled


# ------------------------------------------------------------- short runs ---
def _final_model(workdir):
  """(program, the first run's model at its final checkpoint)."""
  from tinyjax import restore
  prog, group, index = restore.open_run(workdir)
  _, params = restore.load_params(workdir, prog, group, index)
  return prog, nnx.merge(prog.graphdef, jax.tree.map(lambda x: jnp.asarray(x[0]), params))


def test_babyllm_runs_and_reports_the_held_out_answer(baby, tmp_path):
  with baby.unlocked():
    baby.train.update(steps=60, chunk_steps=60)
    baby.checkpoint.every = 0
  summary = train.train_and_evaluate(baby, str(tmp_path), progress=False)
  (run,) = summary['runs']
  assert run['num_params'] == 13 * 16 + 64 * 64 + 64 + 64 * 13 + 13
  assert set(run['generations']) == {'4+4='}
  # The answer, decoded here from the final weights: greedy full forward
  # passes until the line's end (' ') or eval.max_new_tokens.
  prog, model = _final_model(str(tmp_path))
  vocab = prog.task.vocab
  ids = vocab.encode('4+4=')
  new = []
  for _ in range(baby.eval.max_new_tokens):
    nxt = int(np.argmax(np.asarray(model(jnp.asarray([ids + new]))[0])[0, -1]))
    if nxt == vocab.id(' '):
      break
    new.append(nxt)
  answer = vocab.decode(new, False)
  assert run['generations']['4+4='] == answer
  assert run['generation_correct']['4+4='] == (answer == '8')
  assert run['final']['generation/4+4='] == float(answer == '8')
  assert 'heldout/loss' in run['final']


def test_addy_runs_with_val_loss_and_bucketed_exact_match(tmp_path):
  c = _tiny_addy()
  summary = train.train_and_evaluate(c, str(tmp_path), progress=False)
  (run,) = summary['runs']
  # The final row, computed here from the final weights: the val loss (masked
  # mean cross-entropy over the 50 val rows) and each bucket's exact match
  # (a prompt is right iff at every answer position, the expected answer and
  # EOS, the argmax given the expected prefix is the expected token).
  prog, model = _final_model(str(tmp_path))
  vocab, task = prog.task.vocab, prog.task
  v = task.evals['val']
  logits = np.asarray(model(jnp.asarray(v.x_NxT))[0], np.float64)
  logp = logits - logits.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  ce = -np.take_along_axis(logp, v.y_NxT[..., None].astype(int), -1)[..., 0]
  assert abs(run['final']['val/loss'] - (ce * v.mask_NxT).sum() / v.mask_NxT.sum()) < 1e-5
  cases = []  # (bucket, prompt length, prompt + answer + EOS), one forward pass
  for bucket, prompts in task.prompt_buckets.items():
    for p in prompts:
      a, b = map(int, p[:-1].split('+'))
      cases.append((bucket, len(vocab.encode(p)),
                    vocab.encode(p + str(a + b)) + [vocab.id('<EOS>')]))
  width = max(len(seq) for *_, seq in cases)
  x = np.zeros((len(cases), width - 1), np.int32)  # right padding: causal, unread
  for i, (_, _, seq) in enumerate(cases):
    x[i, :len(seq) - 1] = seq[:-1]
  pred = np.argmax(np.asarray(model(jnp.asarray(x))[0]), -1)
  for bucket, prompts in task.prompt_buckets.items():
    right = sum(list(pred[i, n - 1:len(seq) - 1]) == seq[n:]
                for i, (b, n, seq) in enumerate(cases) if b == bucket)
    assert run['final'][f'exact/{bucket}'] == right / len(prompts), bucket
  rows = writer.read_jsonl(str(tmp_path / 'seed=0' / 'metrics.jsonl'))
  assert [r['step'] for r in rows if r.get('exact/2digit') is not None] == [0, 20, 40]
  assert json.load(open(tmp_path / 'summary.json'))['runs'][0]['final'] == run['final']


def test_cosine_schedule_is_sweepable_and_matches_optax():
  import optax
  from tinyjax import optimizer
  cfg = ml_collections.ConfigDict(dict(schedule='cosine', warmup_steps=100,
                                       decay_steps=6000))
  ours = jax.jit(lambda lr, c: optimizer.schedule(cfg, lr)(c))  # lr traced
  ref = optax.warmup_cosine_decay_schedule(0.0, 3e-3, 100, 6000)
  for c in (0, 1, 99, 100, 101, 3000, 5999, 6000, 7000):
    assert abs(float(ours(3e-3, c)) - float(ref(c))) < 1e-9, c
