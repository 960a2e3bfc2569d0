"""Hugging Face / TransformerLens exports and HF-readable tokenizer files,
each loaded in the real library (torch on CPU) and compared with tinyjax.

Models: the :smoke configs of tiny-llm (d 32, 2 layers), GuppyLM (d 32, 2
layers, the published tokenizer), Timmy (the real 6,560-parameter model, 200
steps) and the induction model (d 16, sequences of 2 x 16 tokens), each
trained for a few steps.
"""

import json
import os
import shutil
import warnings

import numpy as np
import pytest

torch = pytest.importorskip('torch')  # requirements-interop.txt; CI installs it
pytest.importorskip('transformers')
pytest.importorskip('transformer_lens')


from tests.conftest import lenses_off, run_cli  # noqa: E402
from tinyjax import export, restore, results, tasks, train  # noqa: E402
from tinyjax.tasks import ConfigError, files  # noqa: E402
from tinyjax.tasks import tokenizer as tokenizer_lib  # noqa: E402

warnings.filterwarnings('ignore', message='HookedTransformer is deprecated')
N_LINES = 1000


def _train(cfg, tmp_path_factory, name):
  w = str(tmp_path_factory.mktemp(name) / 'w')
  train.train_and_evaluate(cfg, w, progress=False)
  return w


@pytest.fixture(scope='module')
def tiny_llm_workdir(tmp_path_factory):
  from configs import tiny_llm
  c = lenses_off(tiny_llm.get_config('smoke'))
  with c.unlocked():
    c.train.steps = 10
    c.eval.steps, c.checkpoint.steps = (0, 10), (0, 10)
    c.task.prompts = c.eval.prompts = ('ROMEO:', 'First Citizen:', 'KING', 'a')
  return _train(c, tmp_path_factory, 'tiny_llm')


@pytest.fixture(scope='module')
def timmy_workdir(tmp_path_factory):
  """Two seeds of Timmy, 200 steps, checkpoints at 0, 50, 100, 150, 200."""
  from configs import timmy
  c = lenses_off(timmy.get_config())
  with c.unlocked():
    c.train.update(steps=200, chunk_steps=50)
    c.checkpoint.update(every=0, log_spaced=False, steps=(0, 50, 100, 150))
    c.sweep.seeds = 2  # the program of tests/test_faults.py's runs: compiled once
    c.report.loss_at = (100,)
  return _train(c, tmp_path_factory, 'timmy')


@pytest.fixture(scope='module')
def induction_workdir(tmp_path_factory):
  from configs import induction
  c = lenses_off(induction.get_config('smoke'))
  with c.unlocked():
    c.task.update(length=16, min_length=4)  # context 31: 20 greedy tokens fit
    c.train.steps = 20
    c.checkpoint.every = 20
    c.report.loss_at = (20,)
  return _train(c, tmp_path_factory, 'induction')


# ------------------------------------------------------------- tokenizers ---
def _hf_ids(path, lines):
  """(tokenizers' ids, transformers' ids) of each line, from the file alone."""
  import tokenizers
  from transformers import PreTrainedTokenizerFast
  fast = tokenizers.Tokenizer.from_file(path)
  wrapped = PreTrainedTokenizerFast(tokenizer_file=path)
  return ([e.ids for e in fast.encode_batch(lines)],
          wrapped(lines)['input_ids'])


def _first_lines(path, n=N_LINES):
  return files.read_text(path).splitlines()[:n]


def _chat_rows(path, n=N_LINES):
  from tinyjax.tasks import chat
  return [chat.render(r) for r in chat.read_conversations(path, 'path')[:n]]


def _tokenizers():
  """(name, a tinyjax tokenizer as it is saved, the shipped text it is
  checked on) for every kind tinyjax writes."""
  import ml_collections
  from configs import pillmish, tiny_llm
  shakespeare = files.read_text('tinyjax/data/tinyshakespeare.txt.xz')
  valid = files.read_text('tinyjax/data/tinystories_valid.txt.xz')
  chats = _chat_rows('tinyjax/data/guppylm_test.jsonl.xz', 3000)
  bpe = ml_collections.ConfigDict({'kind': 'bpe', 'vocab_size': 600, 'min_frequency': 2,
                                   'special_tokens': ('<pad>', '<|im_start|>', '<|im_end|>'),
                                   'eos': '<|im_end|>'})
  return [
      ('char (tiny-llm)', tokenizer_lib.train(tiny_llm.get_config().task.tokenizer, shakespeare),
       _first_lines('tinyjax/data/tinyshakespeare.txt.xz')),
      ('word (Pillmish)', tokenizer_lib.train(pillmish.get_config().task.tokenizer, valid),
       _first_lines('tinyjax/data/tinystories_train.txt.xz')),
      ('bpe (trained)', tokenizer_lib.train(bpe, '\n'.join(chats)),
       _chat_rows('tinyjax/data/guppylm_train.jsonl.xz')),
      ('bpe (GuppyLM published)', tokenizer_lib.Tokenizer.load(
          'tinyjax/data/guppylm_tokenizer.json.xz', '<|im_end|>'),
       _chat_rows('tinyjax/data/guppylm_train.jsonl.xz')),
  ]


def test_every_saved_tokenizer_loads_in_hf_and_encodes_the_same_ids(tmp_path):
  for name, tok, lines in _tokenizers():
    path = str(tmp_path / name.split()[0] / 'tokenizer.json')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tok.save(path)
    assert 'tinyjax' not in json.loads(open(path).read()), name
    want = [tok.encode(l) for l in lines]
    fast, wrapped = _hf_ids(path, lines)
    assert len(lines) == N_LINES and sum(map(len, want)) > 10_000, name
    assert fast == want, name
    assert wrapped == want, name
    import tokenizers  # and back to text as tinyjax decodes
    hf = tokenizers.Tokenizer.from_file(path)
    assert [hf.decode(i, skip_special_tokens=False) for i in want[:200]] == \
        [tok.decode(i, stop_at_eos=False) for i in want[:200]], name
    back = tokenizer_lib.Tokenizer.load(path)  # and tinyjax reads it back, kind and eos
    assert (back.kind, back.eos, back.tokens) == (tok.kind, tok.eos, tok.tokens), name


def test_a_synthetic_vocabulary_has_an_hf_tokenizer_that_encodes_the_same(tmp_path):
  from configs import addy, grokking_small, induction, timmy
  for mod, arg in ((timmy, None), (induction, None), (grokking_small, None), (addy, None)):
    task = tasks.build(mod.get_config(arg).task)
    vocab = task.vocab
    path = str(tmp_path / 'tokenizer.json')
    with open(path, 'w') as f:
      f.write(vocab.hf_tokenizer().to_str())
    x, valid = task.train.x_NxT[:N_LINES], task.train.valid_NxT[:N_LINES]
    lines = [vocab.decode(r[:int(v.sum())], stop_at_eos=False) for r, v in zip(x, valid)]
    want = [vocab.encode(l) for l in lines]
    fast, wrapped = _hf_ids(path, lines)
    assert fast == want and wrapped == want, mod.__name__
    assert want[0] == x[0, :int(valid[0].sum())].tolist(), mod.__name__
    import tokenizers
    with pytest.raises(Exception):  # text without a token fails, as in tinyjax
      tokenizers.Tokenizer.from_file(path).encode('\u2603')


def test_a_workdir_written_before_still_loads_its_tokenizer(tmp_path):
  import ml_collections
  tok = tokenizer_lib.train(ml_collections.ConfigDict(
      {'kind': 'word', 'vocab_size': 50, 'special_tokens': ('[UNK]', '<eos>'), 'eos': '<eos>'}),
      'the cat sat on the mat <eos> the dog sat <eos>\n' * 5)
  path = str(tmp_path / 'tokenizer.json')
  spec = json.loads(tok.hf.to_str())  # the old layout: the metadata inside
  spec['tinyjax'] = {'kind': 'word', 'eos': '<eos>'}
  with open(path, 'w') as f:
    json.dump(spec, f)
  back = tokenizer_lib.Tokenizer.load(path)
  assert (back.kind, back.eos, back.eos_id) == ('word', '<eos>', tok.eos_id)
  assert back.encode('the dog sat') == tok.encode('the dog sat')
  # A tokenizer.json alone (its metadata file lost): the kind read from the file.
  for kind in tokenizer_lib.KINDS:
    t = tokenizer_lib.train(ml_collections.ConfigDict(
        {'kind': kind, 'vocab_size': 60, 'special_tokens': ('[UNK]',)}), 'a cat sat.\n' * 9)
    t.save(path)
    os.remove(tokenizer_lib.meta_path(path))
    assert tokenizer_lib.Tokenizer.load(path).kind == kind


def test_a_corrupt_or_foreign_tokenizer_is_one_line_and_exit_2(tiny_llm_workdir, tmp_path):
  w = str(tmp_path / 'w')
  shutil.copytree(tiny_llm_workdir, w)
  path = os.path.join(w, 'tokenizer.json')
  text = open(path).read()
  for content, needle in ((text[:len(text) // 2], 'is not valid JSON'),
                          ('{"model": {"type": "Nonsense"}}', 'not a tokenizer file'),
                          ('[1, 2]', 'JSON list')):
    with open(path, 'w') as f:
      f.write(content)
    with pytest.raises(ConfigError, match=needle):
      restore.open_run(w)  # what generate, chat, peek and the exporters call
  with open(path, 'w') as f:
    f.write(text[:len(text) // 2])
  for args in (('-m', 'tinyjax.generate', '--workdir', w, '--prompt', 'RO'),
               ('-m', 'tinyjax.export', '--format', 'transformer_lens', '--workdir', w,
                '--out', str(tmp_path / 'o'))):
    r = run_cli(*args)
    assert r.returncode == 2 and r.stderr.count('\n') == 1, r.stderr
    assert 'tokenizer.json' in r.stderr and 'is not valid JSON' in r.stderr, r.stderr


# ---------------------------------------------------------------- models ---
def _prompts_parity(fmt, path, workdir, prompts):
  """max |logit diff| over every position of each prompt, loaded from `path`."""
  prog, group, index = restore.open_run(workdir)
  _, params = restore.load_params(workdir, prog, group, index)
  model = restore.run_model(prog, params)
  lib = export.load_hf(path) if fmt == 'hf' else export.load_transformer_lens(path)
  worst = 0.0
  for p in prompts:
    ids = np.asarray([prog.task.vocab.encode(prog.task.prompt_template.replace('{prompt}', p))],
                     np.int32)
    want = np.asarray(model(ids)[0])
    got = export.torch_logits(fmt, lib, ids)
    assert got.shape == want.shape
    worst = max(worst, float(np.abs(got - want).max()))
  return worst


def _exports_match(workdir, tmp_path, fmt, prompts):
  out = str(tmp_path / fmt)
  index = export.export(fmt, workdir, out)
  (row,) = index['exports']
  c = row['check']
  assert c['ok'] and c['max_abs_logit_diff'] <= 1e-4, c
  assert c['greedy_tokens'] == 20 and c['greedy_identical_prompts'].split('/')[0] == \
      c['greedy_identical_prompts'].split('/')[1], c
  assert _prompts_parity(fmt, out, workdir, prompts) <= 1e-4
  return out


def test_tiny_llm_exports_to_transformer_lens_and_hf_refuses_its_head_bias(
    tiny_llm_workdir, tmp_path):
  _exports_match(tiny_llm_workdir, tmp_path, 'transformer_lens',
                 ['ROMEO:', 'First Citizen:\nBefore we proceed', 'z'])
  with pytest.raises(ConfigError, match=r'model.unembed_bias=True: GPT-2\'s lm_head has no bias'):
    export.export('hf', tiny_llm_workdir, str(tmp_path / 'hf'))
  assert not os.path.exists(tmp_path / 'hf')  # refused before anything is written


@pytest.mark.parametrize('fmt', export.FORMATS)
def test_guppylm_exports_match_jax(chat_workdir, tmp_path, fmt):
  out = _exports_match(chat_workdir, tmp_path, fmt, ['hi guppy', 'are you hungry?'])
  if fmt == 'hf':
    from transformers import AutoTokenizer, GenerationConfig
    tok = AutoTokenizer.from_pretrained(out)
    assert tok('<|im_start|>user\nhi guppy<|im_end|>')['input_ids'] == [1, 88, 64, 779, 278, 2]
    assert tok.eos_token_id == 2
    from tinyjax.tasks import chat  # the chat template: the layout tinyjax.chat uses
    turns = [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'blub'},
             {'role': 'user', 'content': 'hi guppy'}]
    assert tok.apply_chat_template(turns, tokenize=False) == (
        chat.render({'input': 'hi', 'output': 'blub'}) + '\n'
        + chat.TEMPLATE.replace('{prompt}', 'hi guppy'))
    assert GenerationConfig.from_pretrained(out).eos_token_id == 2
    with open(os.path.join(out, 'config.json')) as f:
      config = json.load(f)
    assert config['architectures'] == ['GPT2LMHeadModel'] and config['tie_word_embeddings']


@pytest.mark.parametrize('fmt', export.FORMATS)
def test_timmy_exports_match_jax(timmy_workdir, tmp_path, fmt):
  out = str(tmp_path / fmt)
  index = export.export(fmt, timmy_workdir, out, run='seed=1')
  (row,) = index['exports']
  assert row['check']['ok'] and row['check']['greedy_identical_prompts'] == '6/6'
  assert row['check']['greedy_tokens'] == 20  # sinusoidal positions: past the trained length
  assert row['check']['max_abs_logit_diff'] <= 1e-4


@pytest.mark.slow  # too long for the CI suite's 10 minutes: python -m pytest -m slow
@pytest.mark.parametrize('fmt', export.FORMATS)
def test_the_induction_model_exports_match_jax(induction_workdir, tmp_path, fmt):
  out = _exports_match(induction_workdir, tmp_path, fmt, [])
  if fmt == 'hf':
    lib = export.load_hf(out)
    assert lib.config.n_inner == 1  # attention-only: a zero MLP
    assert not lib.transformer.h[0].mlp.c_fc.weight.any()


def test_transformer_lens_attention_patterns_are_tinyjax_lenses(tiny_llm_workdir, tmp_path):
  """run_with_cache's hook_pattern = the attention weights tinyjax's lenses read
  (the model's forward with inspect=True)."""
  out = str(tmp_path / 'tl')
  export.export('transformer_lens', tiny_llm_workdir, out, check_exports=False)
  prog, group, index = restore.open_run(tiny_llm_workdir)
  _, params = restore.load_params(tiny_llm_workdir, prog, group, index)
  model = restore.run_model(prog, params)
  tokens = np.asarray([prog.task.vocab.encode('ROMEO: To be, or not'),
                       prog.task.vocab.encode('KING HENRY: Good morrow')[:20]], np.int32)
  want = np.asarray(model(tokens, inspect=True)[1]['attn_LxBxHxTxT'])
  lib = export.load_transformer_lens(out)
  with torch.no_grad():
    _, cache = lib.run_with_cache(torch.as_tensor(tokens, dtype=torch.long))
  for l in range(want.shape[0]):
    got = cache[f'blocks.{l}.attn.hook_pattern'].numpy()
    assert got.shape == want[l].shape
    np.testing.assert_allclose(got, want[l], atol=1e-5, rtol=0)


def test_a_timmy_trajectory_in_transformer_lens_gives_the_logged_per_class_loss(
    timmy_workdir, tmp_path):
  """Five checkpoints of one run of a sweep, each loaded in TransformerLens:
  the per-class loss on Timmy's full batch (every row) is the logged one."""
  out = str(tmp_path / 'traj')
  index = export.export('transformer_lens', timmy_workdir, out, run='seed=1',
                        every_checkpoint=True, check_exports=False)
  assert [r['step'] for r in index['exports']] == [0, 50, 100, 150, 200]
  assert [r['path'] for r in index['exports']] == [f'step_{s:06d}' for s in (0, 50, 100, 150, 200)]
  with open(os.path.join(out, 'index.json')) as f:
    assert json.load(f) == index
  prog, _, _ = restore.open_run(timmy_workdir, 'seed=1')
  sp = prog.task.train
  logged = {r['step']: r for r in results.run_rows(timmy_workdir)['seed=1']}
  y = torch.as_tensor(sp.y_NxT, dtype=torch.long)
  for row in index['exports']:
    lib = export.load_transformer_lens(os.path.join(out, row['path']))
    logits = torch.as_tensor(export.torch_logits('transformer_lens', lib, sp.x_NxT))
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction='none').numpy()
    for c, name in enumerate(prog.task.class_names):
      w = sp.mask_NxT * (sp.cls_NxT == c)
      got = (ce * w).sum() / w.sum()
      assert abs(got - logged[row['step']][f'loss/{name}']) <= 1e-4, (row['step'], name)
    got = (ce * sp.mask_NxT).sum() / sp.mask_NxT.sum()
    assert abs(got - logged[row['step']]['loss']) <= 1e-4
  # The loss moved over the trajectory: the comparison saw different models.
  assert logged[0]['loss'] - logged[200]['loss'] > 0.5


def test_a_sweep_exports_every_run_or_the_one_named(timmy_workdir, tmp_path):
  index = export.export('hf', timmy_workdir, str(tmp_path / 'all'), check_exports=False)
  assert [(r['run'], r['path']) for r in index['exports']] == [('seed=0', 'seed=0'),
                                                               ('seed=1', 'seed=1')]
  for r in index['exports']:
    assert os.path.exists(tmp_path / 'all' / r['path'] / 'model.safetensors')
  one = export.export('hf', timmy_workdir, str(tmp_path / 'one'), run='seed=0', step=100,
                      check_exports=False)
  assert one['exports'] == [{'run': 'seed=0', 'step': 100, 'path': '.'}]
  assert os.path.exists(tmp_path / 'one' / 'config.json')


def test_what_cannot_be_expressed_is_refused_by_name():
  from configs import guppylm
  m = guppylm.get_config('smoke').model
  for fmt, change, needle in (
      ('hf', dict(norm='rmsnorm'), "model.norm='rmsnorm'"),
      ('hf', dict(final_norm=False), 'model.final_norm=False'),
      ('hf', dict(tie_embeddings=False, unembed_bias=True), 'model.unembed_bias=True'),
      ('transformer_lens', dict(activation='tanh'), "model.activation='tanh'"),
      ('transformer_lens', dict(final_norm=False), 'model.final_norm=False'),
      ('hf', dict(norm='standardize', norm_eps=1e-5), 'model.norm_eps=1e-05')):
    c = m.copy_and_resolve_references()
    with c.unlocked():
      c.update(change)
    assert needle in export.refusal(fmt, c), (fmt, change)
  assert export.refusal('hf', m) is None and export.refusal('transformer_lens', m) is None


def test_export_mistakes_exit_2_with_one_line(tiny_llm_workdir, tmp_path):
  (tmp_path / 'file').write_text('not a directory')
  w = tiny_llm_workdir
  # Two real processes: a flag absl refuses, and a ConfigError raised by the export.
  for args, needle in (
      (['--format', 'pt', '--workdir', w, '--out', str(tmp_path / 'o')], '--format'),
      (['--format', 'transformer_lens', '--workdir', w, '--out', str(tmp_path / 'o'),
        '--step', '3'], '--step: 3')):
    r = run_cli('-m', 'tinyjax.export', *args)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and needle in r.stderr, (args, r.stderr)
  assert not os.path.exists(tmp_path / 'o')
  # The same ConfigError (one line, exit 2 from the CLI) without a process each:
  for fmt, out, kwargs, needle in (
      ('hf', 'o2', {}, 'model.unembed_bias'),
      ('transformer_lens', 'file', {}, '--out'),
      ('transformer_lens', 'o2', dict(step=10, every_checkpoint=True), '--every_checkpoint'),
      ('transformer_lens', 'o2', dict(run='seed=7'), "--run: 'seed=7' is not a run"),
      ('transformer_lens', 'o2', dict(step=5), '--step: 5 is not a checkpoint')):
    with pytest.raises(ConfigError, match=needle) as e:
      export.export(fmt, w, str(tmp_path / out), **kwargs)
    assert '\n' not in str(e.value), needle
    assert not os.path.exists(tmp_path / 'o2')
  assert (tmp_path / 'file').read_text() == 'not a directory'
