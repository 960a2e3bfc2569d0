"""python -m tinyjax.export --format hf|transformer_lens --workdir W --out DIR
       [--step S | --every_checkpoint] [--run NAME] [--nocheck]

A trained transformer as files that the field's tools load as they are:

  hf                DIR/config.json, model.safetensors, generation_config.json,
                    tokenizer.json, tokenizer_config.json: a stock GPT-2
                    (GPT2LMHeadModel) that `AutoModelForCausalLM.from_pretrained(DIR)`
                    loads without custom code, and `AutoTokenizer` its tokenizer.
  transformer_lens  DIR/hooked_transformer_config.json (HookedTransformerConfig's
                    arguments), model.safetensors (TransformerLens's names and
                    shapes: embed.W_E [V, d], blocks.0.attn.W_Q [H, d, d_head],
                    W_O [H, d_head, d], unembed.W_U [d, V], b_U, ...) and the
                    tokenizer files; `load_transformer_lens(DIR)` (or the lines
                    in docs/export.md) gives a HookedTransformer.

What maps to both: learned positions; sinusoidal positions (and none) as a fixed
position table of SINUSOIDAL_ROWS rows (zeros for none); pre-LN LayerNorm;
'standardize' (Timmy's (x - mean) / (std + eps), no parameters) as LayerNorm with
unit gain, zero bias and eps**2 (TransformerLens: LNPre), equal in fp32 while
eps <= STANDARDIZE_EPS; a missing bias as zeros; embed_scale folded into the
token embedding (the head then untied, as its own copy of the unscaled one);
relu, gelu (jax's tanh approximation = gelu_new) and silu; an attention-only model
(HF: an MLP of one unit whose weights are zero, so it adds exactly 0;
TransformerLens: attn_only). Refused, naming the option: hf: norm rmsnorm or
none, final_norm False, unembed_bias (GPT-2's lm_head has no bias: tiny-llm);
transformer_lens: activation tanh, final_norm False with a norm; both: a model
that is not the transformer.

Several exports: --every_checkpoint writes one per checkpoint, in
DIR/step_NNNNNN/; a sweep without --run writes every run, in DIR/<run name>/;
DIR/index.json lists every export (run, step, path, check) in any case.

Unless --nocheck, every export is loaded in its library (torch on CPU) and
compared with JAX before the command returns: max |logit diff| on every
position of the config's prompts and of random rows (must be <= TOL), and each
prompt's N_GREEDY-token greedy continuation against tinyjax's sampler (must be
identical); written to check.json beside the export. Needs `pip install -r
requirements-interop.txt` (safetensors to write; torch, transformers and
transformer-lens to check and load).
"""

from __future__ import annotations

import json
import math
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np

from tinyjax import cli
from tinyjax.tasks import ConfigError

FORMATS = ('hf', 'transformer_lens')
TOL = 1e-4
N_GREEDY = 20
SINUSOIDAL_ROWS = 1024  # positions written for sinusoidal (or no) positions
STANDARDIZE_EPS = 1e-10  # (std + eps) vs sqrt(var + eps**2): relative gap <= eps / std
ACT_HF = {'relu': 'relu', 'gelu': 'gelu_new', 'silu': 'silu', 'tanh': 'tanh'}
ACT_TL = {'relu': 'relu', 'gelu': 'gelu_new', 'silu': 'silu'}
TL_CONFIG = 'hooked_transformer_config.json'


# ----------------------------------------------------------- what maps ---
def refusal(fmt: str, m) -> str | None:
  """Why config.model `m` cannot be written as `fmt` (one line naming the
  option), or None."""
  if m.name != 'transformer':
    return f'model.name={m.name!r}: only the transformer can be exported'
  if m.norm == 'standardize' and m.norm_eps > STANDARDIZE_EPS:
    return (f"model.norm_eps={m.norm_eps} with norm='standardize': (x - mean) / (std + eps) "
            f'equals LayerNorm (eps**2) only for eps <= {STANDARDIZE_EPS}')
  if fmt == 'hf':
    if m.norm in ('rmsnorm', 'none'):
      return (f'model.norm={m.norm!r}: GPT-2 has LayerNorm only (--format transformer_lens '
              'takes it)')
    if not m.final_norm:
      return 'model.final_norm=False: GPT-2 always normalizes before the head (ln_f)'
    if m.unembed_bias and not m.tie_embeddings:
      return ('model.unembed_bias=True: GPT-2\'s lm_head has no bias (--format '
              'transformer_lens takes it as unembed.b_U)')
    if m.d_mlp > 0 and m.activation not in ACT_HF:
      return f'model.activation={m.activation!r}: not one of GPT-2\'s'
  else:
    if m.d_mlp > 0 and m.activation not in ACT_TL:
      return (f'model.activation={m.activation!r}: TransformerLens has no such act_fn '
              f'(it takes {sorted(ACT_TL)})')
    if m.norm != 'none' and not m.final_norm:
      return (f'model.final_norm=False with norm={m.norm!r}: TransformerLens puts the '
              'blocks\' norm before the head too')
  return None


def _a(x) -> np.ndarray:
  return np.asarray(x[...], np.float32)


def _linear(lin, d_out: int):
  """(kernel [in, out], bias [out]; zeros when the layer has none)."""
  return _a(lin.kernel), (_a(lin.bias) if lin.bias is not None else np.zeros(d_out, np.float32))


def _norm(norm, d: int):
  """(gain, bias) of a Norm as a LayerNorm's (standardize: 1 and 0); rmsnorm:
  (gain, None)."""
  if norm.kind == 'layernorm':
    ln = norm.ln
    return _a(ln.scale), (_a(ln.bias) if ln.bias is not None else np.zeros(d, np.float32))
  if norm.kind == 'rmsnorm':
    return _a(norm.ln.scale), None
  return np.ones(d, np.float32), np.zeros(d, np.float32)


def _eps(m) -> float:
  return float(m.norm_eps) ** 2 if m.norm == 'standardize' else float(m.norm_eps)


def _tables(model, m):
  """(token embedding [V, d] with embed_scale folded in, the head's [d, V]
  and bias [V] (or None), positions [P, d])."""
  from tinyjax import model as model_lib
  d = model.d_model
  e = _a(model.embed.embedding)
  if model.tie_embeddings:
    w_u, b_u = e.T.copy(), None
  else:
    w_u = _a(model.unembed.kernel)
    b_u = _a(model.unembed.bias) if model.unembed.bias is not None else None
  if model.embed_scale:
    e = e * np.float32(math.sqrt(d))
  if model.positions == 'learned':
    pos = _a(model.pos_embed)
  else:
    rows = max(SINUSOIDAL_ROWS, model.max_len)
    pos = (np.asarray(model_lib.sinusoidal_positions(rows, d), np.float32)
           if model.positions == 'sinusoidal' else np.zeros((rows, d), np.float32))
  return e, w_u, b_u, pos


def hf_files(model, m, vocab, settings=None) -> tuple[dict, dict, dict]:
  """(config.json, tensors, generation_config.json) of GPT2LMHeadModel for a
  tinyjax Transformer (one run); check `refusal('hf', m)` first."""
  d, h = model.d_model, m.n_heads
  e, w_u, b_u, pos = _tables(model, m)
  del b_u  # refused unless the head is tied (no bias)
  tied = model.tie_embeddings and not model.embed_scale
  d_mlp = m.d_mlp if m.d_mlp > 0 else 1
  t = {'transformer.wte.weight': e, 'transformer.wpe.weight': pos}
  for i, b in enumerate(model.blocks):
    a, p = b.attn, f'transformer.h.{i}.'
    qkv = [_linear(l, d) for l in (a.q, a.k, a.v)]
    t[p + 'ln_1.weight'], t[p + 'ln_1.bias'] = _norm(b.norm1, d)
    t[p + 'attn.c_attn.weight'] = np.concatenate([k for k, _ in qkv], axis=1)  # Conv1D: [in, out]
    t[p + 'attn.c_attn.bias'] = np.concatenate([c for _, c in qkv])
    t[p + 'attn.c_proj.weight'], t[p + 'attn.c_proj.bias'] = _linear(a.o, d)
    t[p + 'ln_2.weight'], t[p + 'ln_2.bias'] = _norm(b.norm2, d)
    if b.mlp is not None:
      t[p + 'mlp.c_fc.weight'], t[p + 'mlp.c_fc.bias'] = _linear(b.mlp.up, d_mlp)
      t[p + 'mlp.c_proj.weight'], t[p + 'mlp.c_proj.bias'] = _linear(b.mlp.down, d)
    else:  # attention-only: zero weights make the MLP add exactly 0
      t[p + 'mlp.c_fc.weight'] = np.zeros((d, 1), np.float32)
      t[p + 'mlp.c_fc.bias'] = np.zeros(1, np.float32)
      t[p + 'mlp.c_proj.weight'] = np.zeros((1, d), np.float32)
      t[p + 'mlp.c_proj.bias'] = np.zeros(d, np.float32)
  t['transformer.ln_f.weight'], t['transformer.ln_f.bias'] = _norm(model.final_norm, d)
  if not tied:
    t['lm_head.weight'] = w_u.T.copy()
  eos = vocab.eos_id if vocab.eos_id >= 0 else None
  drop = float(m.get('dropout', 0.0))
  config = {
      'model_type': 'gpt2', 'architectures': ['GPT2LMHeadModel'],
      'vocab_size': int(e.shape[0]), 'n_positions': int(pos.shape[0]), 'n_embd': d,
      'n_layer': len(model.blocks), 'n_head': h, 'n_inner': d_mlp,
      'activation_function': ACT_HF.get(m.activation, 'relu'),
      'layer_norm_epsilon': _eps(m),
      # tinyjax's rate at GPT-2's sites (training only; eval() turns it off).
      'resid_pdrop': drop, 'embd_pdrop': drop, 'attn_pdrop': drop,
      'scale_attn_weights': True, 'tie_word_embeddings': tied,
      'initializer_range': float(m.get('init_std', 0.02)),
      'bos_token_id': eos, 'eos_token_id': eos, 'pad_token_id': eos,
      'dtype': 'float32', 'use_cache': True}
  gen = {'bos_token_id': eos, 'eos_token_id': eos, 'pad_token_id': eos}
  if settings is not None and settings.temperature > 0:
    gen.update(do_sample=True, temperature=float(settings.temperature),
               top_k=int(settings.top_k), top_p=float(settings.top_p))
  else:
    gen.update(do_sample=False)
  return config, t, gen


def tl_files(model, m) -> tuple[dict, dict]:
  """(HookedTransformerConfig's arguments, state dict in TransformerLens's
  names and shapes) for a tinyjax Transformer (one run); check
  `refusal('transformer_lens', m)` first."""
  d, h = model.d_model, m.n_heads
  k = d // h
  e, w_u, b_u, pos = _tables(model, m)
  norm_type = {'layernorm': 'LN', 'rmsnorm': 'RMS', 'standardize': 'LNPre',
               'none': None}[m.norm]
  t = {'embed.W_E': e, 'pos_embed.W_pos': pos}

  def put_norm(name, norm):
    w, b = _norm(norm, d)
    if norm_type in ('LN', 'RMS'):
      t[name + '.w'] = w
    if norm_type == 'LN':
      t[name + '.b'] = b

  for i, b in enumerate(model.blocks):
    a, p = b.attn, f'blocks.{i}.'
    put_norm(p + 'ln1', b.norm1)
    for n, lin in (('Q', a.q), ('K', a.k), ('V', a.v)):
      w, c = _linear(lin, d)
      t[f'{p}attn.W_{n}'] = w.reshape(d, h, k).transpose(1, 0, 2).copy()  # [H, d, d_head]
      t[f'{p}attn.b_{n}'] = c.reshape(h, k)
    w, c = _linear(a.o, d)
    t[p + 'attn.W_O'], t[p + 'attn.b_O'] = w.reshape(h, k, d), c  # [H, d_head, d]
    # HookedTransformer's two buffers, as it holds them (the causal mask is
    # built per forward): with them a strict load_state_dict accepts the file.
    t[p + 'attn.mask'] = np.zeros((0, 0), bool)
    t[p + 'attn.IGNORE'] = np.array(-np.inf, np.float32)
    if b.mlp is not None:
      put_norm(p + 'ln2', b.norm2)
      t[p + 'mlp.W_in'], t[p + 'mlp.b_in'] = _linear(b.mlp.up, m.d_mlp)
      t[p + 'mlp.W_out'], t[p + 'mlp.b_out'] = _linear(b.mlp.down, d)
  put_norm('ln_final', model.final_norm)
  t['unembed.W_U'] = w_u
  t['unembed.b_U'] = b_u if b_u is not None else np.zeros(w_u.shape[1], np.float32)
  cfg = {'n_layers': len(model.blocks), 'd_model': d, 'n_ctx': int(pos.shape[0]),
         'd_head': k, 'n_heads': h, 'd_vocab': int(e.shape[0]),
         'd_vocab_out': int(w_u.shape[1]), 'act_fn': ACT_TL.get(m.activation, 'relu'),
         'normalization_type': norm_type, 'eps': _eps(m),
         'attn_only': b.mlp is None, 'd_mlp': int(m.d_mlp) if m.d_mlp > 0 else None,
         'positional_embedding_type': 'standard', 'default_prepend_bos': False,
         'original_architecture': 'tinyjax', 'model_name': 'tinyjax'}
  return cfg, t


def tokenizer_files(vocab, n_positions: int, template: str = '{prompt}') -> tuple[str, dict]:
  """(tokenizer.json text, tokenizer_config.json) of the run's vocabulary; a
  chat task's prompt template (GuppyLM's) becomes a chat_template: each user
  message as the task puts a prompt to the model (the assistant's turn opened
  after it), each assistant message followed by the end token and a newline
  (earlier turns as `python -m tinyjax.chat --history` lays them out)."""
  eos = vocab.eos if vocab.eos_id >= 0 else None
  config = {'tokenizer_class': 'PreTrainedTokenizerFast', 'model_max_length': n_positions,
            'eos_token': eos, 'pad_token': eos, 'clean_up_tokenization_spaces': False}
  if template != '{prompt}':
    before, after = (json.dumps(t) for t in template.split('{prompt}', 1))
    config['chat_template'] = (
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ " + before +
        " }}{{ m['content'] }}{{ " + after + " }}{% else %}{{ m['content'] }}{{ " +
        json.dumps((eos or '') + '\n') + " }}{% endif %}{% endfor %}")
  return vocab.hf_tokenizer().to_str(), config


# ------------------------------------------------------------- loading ---
def load_hf(path: str):
  """The exported directory as transformers' model (fp32, eval mode)."""
  import torch
  from transformers import AutoModelForCausalLM
  from transformers.utils import logging as hf_logging
  hf_logging.disable_progress_bar()
  return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def load_transformer_lens(path: str):
  """The exported directory as a transformer_lens.HookedTransformer (CPU,
  fp32, eval mode): HookedTransformerConfig from its JSON, then a strict
  load_state_dict of the safetensors (every key, every shape)."""
  import safetensors.torch
  from transformer_lens import HookedTransformer, HookedTransformerConfig
  with open(os.path.join(path, TL_CONFIG)) as f:
    cfg = HookedTransformerConfig(**json.load(f), device='cpu')
  model = HookedTransformer(cfg)
  model.load_state_dict(safetensors.torch.load_file(os.path.join(path, 'model.safetensors')))
  return model.eval()


def torch_logits(fmt: str, lib_model, tokens_BxT) -> np.ndarray:
  import torch
  with torch.no_grad():
    x = torch.as_tensor(np.asarray(tokens_BxT), dtype=torch.long)
    out = lib_model(x).logits if fmt == 'hf' else lib_model(x, return_type='logits')
  return out.float().numpy()


# -------------------------------------------------------------- checks ---
_JITTED = {}


def _jax_fns(graphdef, n_new: int):
  """(logits(params, tokens), greedy(params, prompts, lengths)) compiled once
  per model layout, not once per export of a trajectory."""
  import jax
  from flax import nnx
  from tinyjax import sampler
  key = (graphdef, n_new)
  if key not in _JITTED:
    _JITTED[key] = (
        jax.jit(lambda p, t: nnx.merge(graphdef, p)(t)[0]),
        jax.jit(lambda p, t, n: sampler.sample(nnx.merge(graphdef, p), t, n, n_new,
                                               jax.random.key(0), sampler.GREEDY.arrays())[0]))
  return _JITTED[key]


def check(fmt: str, lib_model, model, prog, n_random: int = 4, seed: int = 0) -> dict:
  """The library's model against the JAX one: max |logit diff| over every
  position of each prompt (alone, its own length) and of n_random random rows
  (as long as learned positions allow; else the task's length + N_GREEDY); each prompt's greedy continuation of up to
  N_GREEDY tokens (the prompt cut to its last tokens where prompt +
  continuation would not fit learned positions) by full forward passes in the
  library, against tinyjax's sampler (KV cache)."""
  from flax import nnx
  ctx = prog.context or max(SINUSOIDAL_ROWS, prog.max_len)  # positions the export takes
  n_new = min(N_GREEDY, ctx - 1)
  graphdef, params = nnx.split(model)
  logits, greedy = _jax_fns(graphdef, n_new)
  rng = np.random.default_rng(seed)
  # Random rows: the trained length (past it by N_GREEDY for positions that
  # are not learned, where the greedy continuations go).
  n = prog.context or prog.max_len + N_GREEDY
  rows = [rng.integers(0, len(prog.task.vocab), (n_random, n)).astype(np.int32)]
  prompts = list(prog.task.prompts) or [prog.task.vocab.decode([0], stop_at_eos=False)]
  enc = prog.encode_prompts(prompts)
  ids = [enc['tokens'][i, :n][-(ctx - n_new):] for i, n in enumerate(enc['lengths'])]
  rows += [p[None] for p in ids]
  diff, positions = 0.0, 0
  for r in rows:
    got = torch_logits(fmt, lib_model, r)
    diff = max(diff, float(np.abs(got - np.asarray(logits(params, r))).max()))
    positions += r.shape[0] * r.shape[1]
  padded = np.zeros((len(ids), max(map(len, ids))), np.int32)
  for i, p in enumerate(ids):
    padded[i, :len(p)] = p
  want = np.asarray(greedy(params, padded, np.asarray(list(map(len, ids)), np.int32)))
  same = 0
  for i, p in enumerate(ids):
    seq = list(p)
    for _ in range(n_new):
      seq.append(int(torch_logits(fmt, lib_model, np.asarray([seq]))[0, -1].argmax()))
    same += seq[len(p):] == want[i].tolist()
  return {'max_abs_logit_diff': diff, 'positions_compared': positions,
          'greedy_tokens': n_new, 'greedy_identical_prompts': f'{same}/{len(ids)}',
          'ok': diff <= TOL and same == len(ids)}


# -------------------------------------------------------------- export ---
def _steps_dir(step: int, last: int) -> str:
  return f'step_{step:0{max(6, len(str(last)))}d}'


def write_one(fmt: str, model, m, prog, out: str, settings=None):
  """One run's parameters (an nnx Transformer) as files of `fmt` in `out`."""
  from safetensors.numpy import save_file
  os.makedirs(out, exist_ok=True)
  if fmt == 'hf':
    config, tensors, gen = hf_files(model, m, prog.task.vocab, settings)
    _dump(os.path.join(out, 'config.json'), config)
    _dump(os.path.join(out, 'generation_config.json'), gen)
    n_positions = config['n_positions']
  else:
    config, tensors = tl_files(model, m)
    _dump(os.path.join(out, TL_CONFIG), config)
    n_positions = config['n_ctx']
  save_file(tensors, os.path.join(out, 'model.safetensors'), metadata={'format': 'pt'})
  text, tok_config = tokenizer_files(prog.task.vocab, n_positions, prog.task.prompt_template)
  with open(os.path.join(out, 'tokenizer.json'), 'w', encoding='utf-8') as f:
    f.write(text)
  _dump(os.path.join(out, 'tokenizer_config.json'), tok_config)


def _dump(path, obj):
  with open(path, 'w') as f:
    json.dump(obj, f, indent=1)


def export(fmt: str, workdir: str, out: str, run: str | None = None, step: int | None = None,
           every_checkpoint: bool = False, check_exports: bool = True,
           progress=None) -> dict:
  """Writes the export(s) and DIR/index.json; returns the index."""
  from tinyjax import restore, sweep as sweep_lib, train
  if fmt not in FORMATS:
    raise ConfigError(f'--format: {fmt!r} is not allowed; choose one of {list(FORMATS)} '
                      '(ONNX: python -m tinyjax.export_onnx)')
  if every_checkpoint and step is not None:
    raise ConfigError('--step and --every_checkpoint: choose one')
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConfigError(f'--out: {out!r} is a file; name a directory')
  try:
    import safetensors.numpy  # noqa: F401
  except ImportError:
    raise ConfigError('export needs safetensors: pip install -r requirements-interop.txt') from None
  config = train.load_config(workdir)
  names = [r['name'] for g in sweep_lib.expand(config) for r in g.runs]
  if run is not None and run not in names:
    restore.open_run(workdir, run)  # the ConfigError naming the runs
  chosen = [run] if run is not None else names
  # Refuse before writing anything.
  per_group = {}
  for name in chosen:
    prog, group, index = restore.open_run(workdir, name)
    why = refusal(fmt, group.config.model)
    if why:
      raise ConfigError(f'--format {fmt}: {why}')
    per_group.setdefault(group.name, (prog, group, []))[2].append((name, index))
  if check_exports:
    _check_libraries(fmt)
  index_rows = []
  for prog, group, runs in per_group.values():
    avail = restore.checkpoint_steps(workdir, group)
    if not avail:
      raise ConfigError(f'--workdir {workdir}: no checkpoint to export')
    if step is not None and step not in avail:
      raise ConfigError(f'--step: {step} is not a checkpoint of {workdir}; steps: {avail}')
    steps = avail if every_checkpoint else [step]
    for s in steps:
      found, params = restore.load_group_params(workdir, prog, group, s)
      for name, i in runs:
        model = restore.run_model(prog, params, i)
        parts = ([name] if len(chosen) > 1 else []) + (
            [_steps_dir(found, avail[-1])] if every_checkpoint else [])
        rel = os.path.join(*parts) if parts else ''
        path = os.path.join(out, rel)
        try:
          write_one(fmt, model, group.config.model, prog, path, prog.settings)
        except OSError as e:
          raise ConfigError(f'--out: {path!r} cannot be written ({e.strerror or e})') from None
        row = {'run': name, 'step': int(found), 'path': rel or '.'}
        if check_exports:
          lib = load_hf(path) if fmt == 'hf' else load_transformer_lens(path)
          row['check'] = check(fmt, lib, model, prog)
          _dump(os.path.join(path, 'check.json'), row['check'])
        index_rows.append(row)
        if progress:
          progress(row)
  index = {'format': fmt, 'workdir': os.path.abspath(workdir), 'exports': index_rows}
  _dump(os.path.join(out, 'index.json'), index)
  return index


def _check_libraries(fmt: str):
  need = ['torch', 'transformers'] + (['transformer_lens'] if fmt == 'transformer_lens' else [])
  import importlib.util
  missing = [n for n in need if importlib.util.find_spec(n) is None]
  if missing:
    raise ConfigError(f'the check loads the export in {", ".join(need)} ({", ".join(missing)} '
                      'missing): pip install -r requirements-interop.txt, or pass --nocheck')


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)

  def show(row):
    c = row.get('check')
    print(f"{row['run']} step {row['step']} -> {os.path.normpath(os.path.join(FLAGS.out, row['path']))}"
          + (f": max |logit diff| {c['max_abs_logit_diff']:.2e} over {c['positions_compared']} "
             f"positions; greedy {c['greedy_tokens']} tokens identical for "
             f"{c['greedy_identical_prompts']} prompts" if c else ''), flush=True)

  try:
    index = export(FLAGS.format, FLAGS.workdir, FLAGS.out, FLAGS.run, FLAGS.step,
                   FLAGS.every_checkpoint, FLAGS.check, show)
  except ConfigError as e:
    cli.fail(str(e))
  bad = [r for r in index['exports'] if 'check' in r and not r['check']['ok']]
  if bad:
    cli.fail(f'{len(bad)} export(s) do not match JAX (first: {bad[0]["run"]} step '
             f'{bad[0]["step"]}: {bad[0]["check"]})', 1)


if __name__ == '__main__':
  flags.DEFINE_enum('format', None, FORMATS, 'hf (GPT-2 for transformers) or transformer_lens.')
  flags.DEFINE_string('workdir', None, 'A trained tinyjax workdir (a transformer).')
  flags.DEFINE_string('out', None, 'Directory to write (several exports: one folder each).')
  flags.DEFINE_string('run', None, 'Run name (see summary.json); default: every run.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default: the newest.')
  flags.DEFINE_bool('every_checkpoint', False, 'One export per checkpoint (a trajectory).')
  flags.DEFINE_bool('check', True, 'Load each export in its library and compare with JAX.')
  flags.mark_flags_as_required(['format', 'workdir', 'out'])
  FLAGS = flags.FLAGS
  app.run(main, flags_parser=cli.parse_flags)
