"""Text: corpus files, tokenizers, stream windows, tiny-llm, generate and peek."""

import json
import os

import jax
import numpy as np
import pytest

from tests.conftest import lenses_off, run_cli
from tinyjax import peek
from tinyjax import tasks
from tinyjax import train
from tinyjax.tasks import ConfigError
from tinyjax.tasks import files
from tinyjax.tasks import tokenizer as tokenizer_lib

SHAKESPEARE = 'tinyjax/data/tinyshakespeare.txt.xz'


def _tiny_llm(arg='smoke'):
  from configs import tiny_llm
  return lenses_off(tiny_llm.get_config(arg))


# -------------------------------------------------------------- tokenizers ---
def test_the_shipped_corpus_is_tiny_shakespeare_and_its_char_vocabulary_is_tiny_llms():
  text = files.read_text(SHAKESPEARE, sha256=_tiny_llm().task.sha256)
  assert len(text) == 1_115_394
  tok = tokenizer_lib.train(_tiny_llm().task.tokenizer, text)
  assert len(tok) == 65
  assert tok.tokens[:3] == ('\n', ' ', '!') and tok.tokens[13] == 'A' and tok.tokens[39] == 'a'
  ids = tok.encode('First Citizen:')
  assert ids[:3] == [18, 47, 56] and tok.decode(ids) == 'First Citizen:'
  with pytest.raises(ConfigError, match="'é' at 1"):
    tok.encode('hé!')


@pytest.mark.parametrize('kind,extra', [
    ('char', {}),
    ('word', {'vocab_size': 50, 'lowercase': True, 'special_tokens': ('[UNK]',)}),
    ('bpe', {'vocab_size': 300, 'min_frequency': 2,
             'special_tokens': ('<pad>', '<|im_start|>', '<|im_end|>')}),
])
def test_a_tokenizer_saved_and_loaded_encodes_the_same(tmp_path, kind, extra):
  import ml_collections
  text = 'the cat sat on the mat. The dog sat on the log!\n' * 20 + 'a rat ran.\n'
  tok = tokenizer_lib.train(ml_collections.ConfigDict({'kind': kind, **extra}), text)
  tok.save(str(tmp_path / 'tokenizer.json'))
  back = tokenizer_lib.Tokenizer.load(str(tmp_path / 'tokenizer.json'))
  probe = 'the cat ran on the log.'
  assert back.encode(probe) == tok.encode(probe) and back.kind == kind
  assert back.tokens == tok.tokens
  if kind == 'word':
    assert tok.decode(tok.encode('The CAT sat')) == 'the cat sat'  # lowercase, joined by spaces
    assert tok.encode('zebra') == [tok.id('[UNK]')]
  else:
    assert tok.decode(tok.encode(probe)) == probe
  if kind == 'bpe':
    assert [tok.id(t) for t in ('<pad>', '<|im_start|>', '<|im_end|>')] == [0, 1, 2]
    assert len(tok.encode('the cat')) < len('the cat')  # merges learned


def test_character_set_classes_partition_the_tokens():
  task = train.build_task(_tiny_llm())
  names, of_token = task.class_names, task.train.class_of_token_V
  assert names == ('letter', 'newline', 'punct', 'space', 'other')
  by_class = {n: ''.join(t for t, c in zip(task.vocab.tokens, of_token) if names[c] == n)
              for n in names}
  assert len(by_class['letter']) == 52 and by_class['space'] == ' '
  assert by_class['newline'] == '\n' and by_class['other'] == '3'


# ------------------------------------------------------------------ stream ---
def test_stream_windows_are_shifted_slices_drawn_from_the_key():
  toks = np.arange(1000, dtype=np.int32)
  s = tasks.Stream(toks, np.zeros(1000, np.int32), block_size=16, eval_iters=3,
                   eval_batch_size=5)
  arrays = jax.device_put(s.arrays())
  key = jax.random.key(0)
  b = jax.jit(lambda k, step: s.batch(arrays, k, step, 8))(key, 3)
  x, y = np.asarray(b['x_NxT']), np.asarray(b['y_NxT'])
  assert x.shape == (8, 16) and (y == x + 1).all()  # contiguous, shifted by one
  assert (x == x[:, :1] + np.arange(16)).all()
  again = s.batch(arrays, key, 3, 8)
  assert (np.asarray(again['x_NxT']) == x).all()  # same key and step: same windows
  assert (np.asarray(s.batch(arrays, key, 4, 8)['x_NxT']) != x).any()
  assert (np.asarray(s.batch(arrays, jax.random.key(1), 3, 8)['x_NxT']) != x).any()


def test_every_window_start_is_drawn_and_none_runs_past_the_end():
  """A stream of block_size + 2 tokens has exactly two windows: starts 0 and 1."""
  s = tasks.Stream(np.arange(10, dtype=np.int32), np.zeros(10, np.int32), block_size=8)
  b = s.windows(jax.device_put(s.arrays()), jax.random.key(0), 400)
  starts = np.asarray(b['x_NxT'])[:, 0]
  assert set(starts) == {0, 1} and np.asarray(b['y_NxT']).max() == 9


def test_stream_evaluation_is_the_mean_over_eval_iters_batches():
  s = tasks.Stream(np.arange(1000, dtype=np.int32), np.zeros(1000, np.int32), block_size=4,
                   eval_iters=3, eval_batch_size=2)
  arrays = jax.device_put(s.arrays())
  fn = lambda batch: {'m': batch['x_NxT'][:, 0].astype(np.float32).mean()}
  key = jax.random.key(7)
  got = float(s.evaluate(fn, arrays, key)['m'])
  each = [float(fn(s.windows(arrays, k, 2))['m']) for k in jax.random.split(key, 3)]
  assert len(set(each)) == 3 and abs(got - np.mean(each)) < 1e-3


@pytest.mark.parametrize('content,needle', [
    (None, 'is not a file'),
    (b'', 'is empty'),
    (b'abc\xff\xfe', 'not UTF-8 text'),
    (b'short text', 'shorter than task.block_size'),
])
def test_a_bad_corpus_is_refused_before_anything_is_written(tmp_path, content, needle):
  path = tmp_path / 'corpus.txt'
  if content is not None:
    path.write_bytes(content)
  c = _tiny_llm()
  with c.unlocked():
    c.task.path, c.task.sha256 = str(path), ''
  w = tmp_path / 'w'
  with pytest.raises(ConfigError, match=needle) as e:
    train.train_and_evaluate(c, str(w), progress=False)
  assert 'task.path' in str(e.value) and not w.exists()


def test_a_wrong_sha256_and_an_out_of_vocabulary_prompt_are_refused(tmp_path):
  c = _tiny_llm()
  with c.unlocked():
    c.task.sha256 = '0' * 64
  with pytest.raises(ConfigError, match='task.sha256'):
    train.build_task(c)
  r = run_cli('-m', 'tinyjax.run', '--config', 'configs/tiny_llm.py:smoke',
              '--config.eval.prompts=("ROMEO ~",)', '--workdir', str(tmp_path / 'w'))
  assert r.returncode == 2 and r.stderr.count('\n') == 1
  assert 'eval.prompts' in r.stderr and "'~'" in r.stderr
  assert not (tmp_path / 'w').exists()


# ---------------------------------------------------------------- tiny-llm ---
def test_tiny_llm_has_exactly_824897_parameters():
  from tinyjax import program
  c = _tiny_llm(None)
  assert program.Program(c, train.build_task(c)).num_params == 824_897


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  w = str(tmp_path_factory.mktemp('tiny') / 'w')
  summary = train.train_and_evaluate(_tiny_llm(), w, progress=False)
  return w, summary


def test_a_smoke_run_writes_the_tokenizer_and_evaluates_at_the_given_steps(smoke_run):
  w, summary = smoke_run
  run = summary['runs'][0]
  assert run['num_params'] == 22_209 and run['complete']
  tok = tokenizer_lib.Tokenizer.load(os.path.join(w, 'tokenizer.json'))
  assert len(tok) == 65 and tok.kind == 'char'
  rows = [json.loads(l) for l in open(os.path.join(w, 'seed=0', 'metrics.jsonl'))]
  assert [r['step'] for r in rows] == [0, 5, 10, 15, 20]
  with_eval = [r['step'] for r in rows if r['val/loss'] is not None]
  assert with_eval == [0, 10, 20]  # eval.steps (0, 10) and the final row
  assert all(r['train/loss'] is not None for r in rows if r['step'] in with_eval)
  assert {'val/loss/letter', 'val/loss/space', 'loss/newline'} <= set(rows[0])
  assert run['generations']['ROMEO:'] and len(run['generations']['ROMEO:']) == 40


def test_resuming_a_corpus_run_is_bitwise_exact(smoke_run, tmp_path, capsys):
  import shutil
  w, _ = smoke_run
  w2 = str(tmp_path / 'w2')
  shutil.copytree(w, w2)
  shutil.rmtree(os.path.join(w2, 'checkpoints', '20'))
  os.remove(os.path.join(w2, 'summary.json'))
  train.train_and_evaluate(_tiny_llm(), w2, progress=False)
  assert 'resuming runs from step 10' in capsys.readouterr().out
  for f in ('seed=0/metrics.jsonl', 'summary.json'):
    a, b = open(os.path.join(w, f)).read(), open(os.path.join(w2, f)).read()
    if f == 'summary.json':
      a, b = json.loads(a)['runs'], json.loads(b)['runs']
    assert a == b, f


def test_generate_samples_reproducibly_and_refuses_an_unknown_character(smoke_run):
  from tinyjax import generate, sampler
  w, _ = smoke_run
  hot = sampler.Settings(temperature=1.0, top_k=5)
  gen = lambda seed: generate.generate(w, ['ROMEO:'], max_new_tokens=30, settings=hot,
                                       seed=seed)['ROMEO:']
  a, b, c = gen(3), gen(3), gen(4)
  assert a == b and a != c and len(a) == 30
  ok = run_cli('-m', 'tinyjax.generate', '--workdir', w, '--prompt', 'ROMEO:',
               '--temperature', '1', '--top_k', '5', '--max_new_tokens', '30', '--seed', '3')
  assert ok.returncode == 0 and ok.stdout.rstrip('\n') == a
  # The refusal in-process: the CLI turns this ConfigError into one line and
  # exit 2 (tested with a real process below: --constraint, and test_export.py).
  with pytest.raises(ConfigError, match="'~'") as e:
    generate.generate(w, ['ROMEO ~'])
  assert '\n' not in str(e.value)


def test_the_peek_export_follows_the_schema_and_is_consistent(smoke_run, tmp_path):
  w, summary = smoke_run
  out = str(tmp_path / 'peek')
  res = peek.export(w, out)
  assert peek.validate(out) == []
  assert set(peek.FILES) <= set(res['files']) and res['steps'] == [0, 10, 20]
  load = lambda f: json.load(open(os.path.join(out, f)))
  meta = load('meta.json')
  assert meta['n_params'] == summary['runs'][0]['num_params'] and meta['not_exported'] == []
  assert [p['name'] for p in meta['params']][:3] == [
      'tok_emb.weight', 'pos_emb.weight', 'blocks.0.attn.heads.0.key.weight']
  pred, hidden, head = load('predictions.json'), load('hidden_state.json'), load('lm_head.json')
  assert pred['prompt'] == hidden['prompt'] == 'ROMEO'
  assert abs(sum(pred['probs']) - 1) < 1e-5
  logits = np.asarray(head['weight']) @ np.asarray(hidden['state']) + np.asarray(head['bias'])
  np.testing.assert_allclose(logits, pred['logits'], atol=2e-3)  # 4-decimal rounding
  att = load('attention.json')
  assert att['prompt'] == 'ROMEO: To be' and len(att['tokens']) == 12
  w_ = np.asarray(att['layers'])
  assert w_.shape == (2, 2, 12, 12) and np.allclose(w_.sum(-1), 1, atol=1e-3)
  assert (np.triu(w_, 1) == 0).all()
  tr = load('training.json')
  assert [c['step'] for c in tr['checkpoints']] == [0, 10, 20]
  assert all(c['sample'].startswith('ROMEO:') and len(c['sample']) == 46
             for c in tr['checkpoints'])
  traj = open(os.path.join(out, 'trajectory.js')).read()
  assert traj.startswith('window.TINYJAX_TRAJECTORY = ')
  data = json.loads(traj[len('window.TINYJAX_TRAJECTORY = '):].rstrip().rstrip(';'))
  assert [c['step'] for c in data['checkpoints']] == [0, 10, 20]
  assert np.asarray(data['checkpoints'][0]['embedding']).shape == (65, 2)


def test_the_page_loads_nothing_from_the_network():
  html = open(peek.PAGE).read()
  assert 'http://' not in html and 'https://' not in html
  assert '<script src="trajectory.js">' in html


def test_a_model_laid_out_unlike_tiny_llm_exports_what_applies(timmy, tmp_path):
  with timmy.unlocked():  # the program of tests/test_train.py's runs (chunks of 50)
    timmy.train.update(steps=50, chunk_steps=50)
    timmy.checkpoint.update(every=10, log_spaced=False)
  w, out = str(tmp_path / 'w'), str(tmp_path / 'peek')
  train.train_and_evaluate(timmy, w, progress=False)
  with pytest.raises(ConfigError, match='--probe'):
    peek.export(w, out)  # 'ROMEO: To be' is not Timmy's vocabulary
  peek.export(w, out, probe='red red red', predict='blue blue')
  assert peek.validate(out) == []
  meta = json.load(open(os.path.join(out, 'meta.json')))
  assert meta['n_params'] == 6560 and not os.path.exists(os.path.join(out, 'pos_emb.json'))
  assert any('pos_emb' in m for m in meta['not_exported'])
  att = json.load(open(os.path.join(out, 'attention.json')))
  assert att['tokens'] == ['red', ' ', 'red', ' ', 'red']


def test_a_separate_validation_file_and_its_errors(tmp_path):
  (tmp_path / 'train.txt').write_text('the cat sat on the mat .\n' * 50)
  (tmp_path / 'val.txt').write_text('the dog sat on the log .\n' * 10)
  from configs import pillmish
  c = lenses_off(pillmish.get_config('smoke'))
  with c.unlocked():
    c.task.update(path=str(tmp_path / 'train.txt'), sha256='',
                  val_path=str(tmp_path / 'val.txt'), val_sha256='', block_size=8)
  task = train.build_task(c)
  assert len(task.train.tokens_N) == 7 * 50  # the whole training file
  val = task.vocab.decode(task.evals['val'].tokens_N[:7])
  assert val == 'the [UNK] sat on the [UNK] .'  # 'dog' and 'log' never trained
  with c.unlocked():
    c.task.val_path = str(tmp_path / 'missing.txt')
  with pytest.raises(ConfigError, match='task.val_path'):
    train.build_task(c)


@pytest.fixture(scope='module')
def word_run(tmp_path_factory):
  """A Pillmish smoke run (word level, dropout 0.1)."""
  from configs import pillmish
  w = str(tmp_path_factory.mktemp('words') / 'w')
  train.train_and_evaluate(lenses_off(pillmish.get_config('smoke')), w, progress=False)
  return w


def test_dropout_changes_training_but_not_evaluation_and_resumes_exactly(word_run, tmp_path,
                                                                         capsys):
  import shutil
  from configs import pillmish
  from tinyjax import program
  c = lenses_off(pillmish.get_config('smoke'))
  assert c.model.dropout == 0.1
  task = train.build_task(c)
  progs = {}
  for rate in (0.0, 0.1):
    with c.unlocked():
      c.model.dropout = rate
    progs[rate] = train.program_for(c, task)
  hp = program.hparam_arrays([program.base_hparams(c)])
  state = progs[0.0].init(hp)
  data = jax.device_put(progs[0.0].data)
  _, m0 = progs[0.0].evaluate(state, hp, data, 0)
  _, m1 = progs[0.1].evaluate(state, hp, data, 0)
  assert float(m0['val/loss'][0]) == float(m1['val/loss'][0])  # no dropout in evaluation
  assert float(m0['loss'][0]) != float(m1['loss'][0])  # the training loss has it
  w2 = str(tmp_path / 'w2')
  shutil.copytree(word_run, w2)
  shutil.rmtree(os.path.join(w2, 'checkpoints', '20'))
  train.train_and_evaluate(lenses_off(pillmish.get_config('smoke')), w2, progress=False)
  assert 'resuming runs from step 10' in capsys.readouterr().out
  a, b = (open(os.path.join(d, 'seed=0', 'metrics.jsonl')).read() for d in (word_run, w2))
  assert a == b


def test_dropout_is_keyed_and_only_in_training():
  from flax import nnx
  from tinyjax import model as model_lib
  from configs import pillmish
  cfg = pillmish.get_config('smoke').model
  with cfg.unlocked():
    cfg.dropout = 0.5
  m = model_lib.build(cfg, 20, 8, nnx.Rngs(0))
  x = jax.numpy.arange(16).reshape(2, 8) % 20
  plain = np.asarray(m(x)[0])
  assert (np.asarray(m(x)[0]) == plain).all()  # no key: deterministic
  k1, k2 = jax.random.key(1), jax.random.key(2)
  a, b = np.asarray(m(x, dropout_key=k1)[0]), np.asarray(m(x, dropout_key=k1)[0])
  assert (a == b).all() and (a != plain).any()
  assert (np.asarray(m(x, dropout_key=k2)[0]) != a).any()


def test_pilish_generation_from_a_word_level_workdir(word_run):
  from tinyjax import generate, pilish, sampler
  check = pilish.Pilish(tokenizer_lib.Tokenizer.load(os.path.join(word_run, 'tokenizer.json')).tokens,
                        12)
  for beam, seed, t in ((0, 1, 1.0), (3, 0, 0.0)):
    out = generate.generate(word_run, ['once upon a time'], max_new_tokens=12, seed=seed,
                            settings=sampler.Settings(temperature=t), constraint='pilish',
                            beam=beam)['once upon a time']
    assert len(out.split()) == 12 and check.satisfied(out), out
  bad = run_cli('-m', 'tinyjax.generate', '--workdir', word_run, '--prompt', 'once',
                '--constraint', 'haiku')
  assert bad.returncode == 2 and '--constraint' in bad.stderr and bad.stderr.count('\n') == 1


def test_bpe_trained_as_guppylm_equals_its_published_tokenizer():
  """GuppyLM's byte-level BPE (vocab 4096, min_frequency 2, three specials)
  trained on its chat strings, train then test split, is the published one."""
  import ml_collections
  rows = [json.loads(l) for split in ('train', 'test') for l in
          files.read_text(f'tinyjax/data/guppylm_{split}.jsonl.xz').splitlines()]
  chats = [f"<|im_start|>user\n{r['input']}<|im_end|>\n<|im_start|>assistant\n"
           f"{r['output']}<|im_end|>" for r in rows]
  cfg = ml_collections.ConfigDict({'kind': 'bpe', 'vocab_size': 4096, 'min_frequency': 2,
                                   'special_tokens': ('<pad>', '<|im_start|>', '<|im_end|>')})
  tok = tokenizer_lib.train(cfg, '\n'.join(chats))
  published = json.loads(files.read_text(
      'tinyjax/data/guppylm_tokenizer.json.xz',
      sha256='b03b0b94a723f4c6757a39836f2755adb5a240e40017b089ba1820f51da6c92a'))
  ours = json.loads(tok.hf.to_str())
  assert len(tok) == 2418
  assert ours['model']['vocab'] == published['model']['vocab']
  assert ours['model']['merges'] == published['model']['merges']
  prompt = '<|im_start|>user\nhi guppy<|im_end|>\n<|im_start|>assistant\n'
  assert tok.encode(prompt) == [1, 88, 64, 779, 278, 2, 64, 1, 89, 64]  # the demo's check
  # Trained on the train split alone (57,000 strings) it is another tokenizer.
  alone = json.loads(tokenizer_lib.train(cfg, '\n'.join(chats[:57_000])).hf.to_str())
  assert alone['model']['merges'] != published['model']['merges']
