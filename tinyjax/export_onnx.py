"""python -m tinyjax.export_onnx --workdir W --out guppy.onnx [--quantize uint8]

One run of a trained transformer workdir as an ONNX model (opset 17), the
GuppyLM browser target: input `input_ids` (int64 [batch, seq_len], both
dynamic, seq_len <= the model's positions), output `logits` (float32 [batch,
seq_len, vocab]). The workdir's tokenizer.json is copied beside it.

--quantize uint8 writes --out as onnxruntime's dynamic uint8 quantization
(weights QUInt8, as the original) and keeps the float model beside it as
`<out stem>.fp32.onnx`.

Every export is checked with onnxruntime before the command returns: max abs
logit difference to JAX on random tokens (fp32 must be within 1e-4) and the
20-token greedy continuation of the config's prompts (fp32 must be identical;
for uint8 the agreement is reported). The report is printed and written as
`<out>.check.json`.

The graph is written with `onnx.helper`, node by node from the NNX model's
parameters: no exporter package (jax2onnx pins an older orbax and pulls
equinox, dm-pix, netron and huggingface-hub). Needs `pip install -r
requirements-export.txt` (onnx, onnxruntime).
"""

from __future__ import annotations

import json
import math
import os
import shutil

from absl import app
from absl import flags
from absl import logging
import numpy as np

from tinyjax import cli
from tinyjax.tasks import ConfigError

OPSET = 17
QUANTIZE = ('uint8',)
TOL = 1e-4
N_GREEDY = 20


class Graph:
  """Nodes and initializers of one ONNX graph, with fresh value names."""

  def __init__(self):
    from onnx import helper, numpy_helper
    self.helper, self.numpy_helper = helper, numpy_helper
    self.nodes, self.inits, self.n = [], [], 0

  def const(self, name: str, value) -> str:
    """An initializer named `name` (suffixed if the name is taken)."""
    taken = {t.name for t in self.inits}
    name = next(n for n in (name, *(f'{name}.{i}' for i in range(1, len(taken) + 2)))
                if n not in taken)
    self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
    return name

  def __call__(self, op: str, *inputs: str, **attrs) -> str:
    self.n += 1
    out = f'{op.lower()}_{self.n}'
    self.nodes.append(self.helper.make_node(op, list(inputs), [out], **attrs))
    return out


def _kernel(linear):
  return np.asarray(linear.kernel[...], np.float32)


def _linear(g: Graph, x: str, linear, name: str) -> str:
  y = g('MatMul', x, g.const(f'{name}.kernel', _kernel(linear)))
  if linear.bias is not None:
    y = g('Add', y, g.const(f'{name}.bias', np.asarray(linear.bias[...], np.float32)))
  return y


def _norm(g: Graph, x: str, norm, name: str) -> str:
  """tinyjax.model.Norm: layernorm (LayerNormalization), rmsnorm and
  standardize composed from reductions, none."""
  if norm.kind == 'layernorm':
    ln = norm.ln
    scale = np.asarray(ln.scale[...], np.float32)
    bias = (np.asarray(ln.bias[...], np.float32) if ln.bias is not None
            else np.zeros_like(scale))
    return g('LayerNormalization', x, g.const(f'{name}.scale', scale),
             g.const(f'{name}.bias', bias), axis=-1, epsilon=float(ln.epsilon))
  if norm.kind == 'rmsnorm':
    ms = g('ReduceMean', g('Mul', x, x), axes=[-1], keepdims=1)
    rms = g('Sqrt', g('Add', ms, g.const(f'{name}.eps', np.float32(norm.ln.epsilon))))
    return g('Mul', g('Div', x, rms),
             g.const(f'{name}.scale', np.asarray(norm.ln.scale[...], np.float32)))
  if norm.kind == 'standardize':
    d = g('Sub', x, g('ReduceMean', x, axes=[-1], keepdims=1))
    std = g('Sqrt', g('ReduceMean', g('Mul', d, d), axes=[-1], keepdims=1))
    return g('Div', d, g('Add', std, g.const(f'{name}.eps', np.float32(norm.eps))))
  return x


def _activation(g: Graph, x: str, kind: str) -> str:
  if kind == 'relu':
    return g('Relu', x)
  if kind == 'tanh':
    return g('Tanh', x)
  if kind == 'silu':
    return g('Mul', x, g('Sigmoid', x))
  # gelu: jax.nn.gelu's default tanh approximation (Gelu is opset 20).
  c = lambda v: g.const('gelu', np.float32(v))
  inner = g('Mul', c(math.sqrt(2 / math.pi)),
            g('Add', x, g('Mul', c(0.044715), g('Mul', x, g('Mul', x, x)))))
  return g('Mul', g('Mul', c(0.5), x), g('Add', c(1.0), g('Tanh', inner)))


def build(model, vocab_size: int, max_len: int):
  """The onnx.ModelProto of a tinyjax.model.Transformer (one run's params)."""
  from onnx import TensorProto, helper
  from tinyjax import model as model_lib
  g = Graph()
  d = model.d_model
  h = model.blocks[0].attn.n_heads
  k = d // h
  seq = g('Shape', 'input_ids', start=1, end=2)  # [T]
  zero = g.const('zero', np.array([0], np.int64))

  def first_rows(table: str, axes) -> str:
    """table[:T] (axes [0]) or table[:T, :T] (axes [0, 1])."""
    n = len(axes)
    ends = seq if n == 1 else g('Concat', seq, seq, axis=0)
    starts = zero if n == 1 else g.const(f'zeros{n}', np.zeros(n, np.int64))
    return g('Slice', table, starts, ends, g.const(f'axes{n}', np.array(axes, np.int64)))

  emb = np.asarray(model.embed.embedding[...], np.float32)
  x = g('Gather', g.const('embed', emb), 'input_ids', axis=0)
  if model.embed_scale:
    x = g('Mul', x, g.const('embed_scale', np.float32(math.sqrt(d))))
  if model.positions == 'learned':
    x = g('Add', x, first_rows(g.const('pos_embed', np.asarray(model.pos_embed[...],
                                                                np.float32)), [0]))
  elif model.positions == 'sinusoidal':
    table = np.asarray(model_lib.sinusoidal_positions(max_len, d), np.float32)
    x = g('Add', x, first_rows(g.const('pos_sinusoidal', table), [0]))
  causal = first_rows(g.const('causal', np.tril(np.ones((max_len, max_len), bool))), [0, 1])
  fill = g.const('fill', np.float32(np.finfo(np.float32).min))
  scale = g.const('attn_scale', np.float32(1 / math.sqrt(k)))
  heads = g.const('heads_shape', np.array([0, 0, h, k], np.int64))
  merged = g.const('merged_shape', np.array([0, 0, d], np.int64))
  split = g.const('qkv_split', np.array([d, d, d], np.int64))
  for i, block in enumerate(model.blocks):
    a = block.attn
    y = _norm(g, x, block.norm1, f'block{i}.norm1')
    # q, k, v as one fused product (one weight to quantize, as GuppyLM's qkv).
    w = np.concatenate([_kernel(a.q), _kernel(a.k), _kernel(a.v)], axis=1)
    qkv = g('MatMul', y, g.const(f'block{i}.qkv.kernel', w))
    if a.q.bias is not None:
      b = np.concatenate([np.asarray(l.bias[...], np.float32) for l in (a.q, a.k, a.v)])
      qkv = g('Add', qkv, g.const(f'block{i}.qkv.bias', b))
    q_out, k_out, v_out = (f'block{i}.{n}' for n in 'qkv')
    g.nodes.append(helper.make_node('Split', [qkv, split], [q_out, k_out, v_out], axis=-1))
    q = g('Transpose', g('Reshape', q_out, heads), perm=[0, 2, 1, 3])    # B H T K
    kt = g('Transpose', g('Reshape', k_out, heads), perm=[0, 2, 3, 1])   # B H K T
    v = g('Transpose', g('Reshape', v_out, heads), perm=[0, 2, 1, 3])    # B H T K
    s = g('Where', causal, g('Mul', g('MatMul', q, kt), scale), fill)
    o = g('MatMul', g('Softmax', s, axis=-1), v)
    o = g('Reshape', g('Transpose', o, perm=[0, 2, 1, 3]), merged)
    x = g('Add', x, _linear(g, o, a.o, f'block{i}.attn_out'))
    if block.mlp is not None:
      y = _norm(g, x, block.norm2, f'block{i}.norm2')
      act = next(n for n, f in model_lib.ACTIVATIONS.items() if f is block.mlp.act)
      y = _activation(g, _linear(g, y, block.mlp.up, f'block{i}.mlp_up'), act)
      x = g('Add', x, _linear(g, y, block.mlp.down, f'block{i}.mlp_down'))
  x = _norm(g, x, model.final_norm, 'final_norm')
  if model.tie_embeddings:
    # The head's own [D, V] copy of the embedding: a MatMul weight the
    # quantizer turns into uint8 like every other.
    logits = g('MatMul', x, g.const('unembed', emb.T.copy()))
  else:
    logits = _linear(g, x, model.unembed, 'unembed')
  g.nodes.append(helper.make_node('Identity', [logits], ['logits']))
  graph = helper.make_graph(
      g.nodes, 'tinyjax_transformer',
      [helper.make_tensor_value_info('input_ids', TensorProto.INT64, ['batch', 'seq_len'])],
      [helper.make_tensor_value_info('logits', TensorProto.FLOAT,
                                     ['batch', 'seq_len', vocab_size])], g.inits)
  proto = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                            producer_name='tinyjax')
  proto.ir_version = 8  # what opset 17 runtimes (onnxruntime-web 1.21) read
  return proto


def _greedy_onnx(session, prompt_ids, n_new: int) -> list[int]:
  """n_new greedy tokens by full forward passes (no stop token)."""
  ids = list(prompt_ids)
  for _ in range(n_new):
    logits = session.run(['logits'], {'input_ids': np.asarray([ids], np.int64)})[0]
    ids.append(int(logits[0, -1].argmax()))
  return ids[len(prompt_ids):]


def check(session, model, prog, n_random: int = 4, seed: int = 0) -> dict:
  """An onnxruntime session against the JAX model: max abs logit difference
  on random tokens (n_random rows of the longest length the graph takes) and
  the N_GREEDY-token greedy continuation of each of the config's prompts."""
  import jax
  from tinyjax import sampler
  tokens = np.random.default_rng(seed).integers(0, len(prog.task.vocab),
                                                (n_random, prog.context or prog.max_len))
  ref = np.asarray(jax.jit(lambda t: model(t)[0])(tokens.astype(np.int32)))
  got = session.run(['logits'], {'input_ids': tokens.astype(np.int64)})[0]
  prompts = list(prog.task.prompts) or ['']
  enc = prog.encode_prompts(prompts)
  jax_toks = np.asarray(jax.jit(lambda t: sampler.sample(
      model, t, enc['lengths'], N_GREEDY, jax.random.key(0), sampler.GREEDY.arrays())[0])(
          enc['tokens']))
  same, agree = 0, 0
  for i, n in enumerate(enc['lengths']):
    onnx_toks = _greedy_onnx(session, enc['tokens'][i, :n], N_GREEDY)
    same += onnx_toks == jax_toks[i].tolist()
    agree += sum(a == b for a, b in zip(onnx_toks, jax_toks[i].tolist()))
  return {'max_abs_logit_diff': float(np.abs(got - ref).max()),
          'greedy_identical_prompts': f'{same}/{len(prompts)}',
          'greedy_tokens_agreeing': f'{agree}/{len(prompts) * N_GREEDY}'}


def export(workdir: str, out: str, run: str | None = None, step: int | None = None,
           quantize: str | None = None) -> dict:
  """Writes the ONNX model(s) and tokenizer.json; returns the check report."""
  try:
    import onnx
    import onnxruntime as ort
  except ImportError as e:
    raise ConfigError(f'export needs onnx and onnxruntime ({e.name} missing): '
                      'pip install -r requirements-export.txt') from None
  import jax
  from tinyjax import restore, train
  if quantize not in (None, *QUANTIZE):
    raise ConfigError(f'--quantize: {quantize!r} is not allowed; choose one of {list(QUANTIZE)}')
  if os.path.isdir(out) or not out.endswith('.onnx'):
    raise ConfigError(f'--out: {out!r} must name a .onnx file')
  prog, group, index = restore.open_run(workdir, run)
  if group.config.model.name != 'transformer':
    raise ConfigError(f'--workdir {workdir}: model {group.config.model.name!r} cannot be '
                      'exported; only the transformer is')
  found, params = restore.load_params(workdir, prog, group, index, step)
  model = restore.run_model(prog, params)
  proto = build(model, prog.vocab_size, prog.context or prog.max_len)
  onnx.checker.check_model(proto)
  try:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  except OSError as e:
    raise ConfigError(f'--out: {out!r}: its directory cannot be created ({e.strerror or e})') from None
  fp32 = out[:-len('.onnx')] + '.fp32.onnx' if quantize else out
  onnx.save(proto, fp32)
  paths = {'fp32': fp32}
  if quantize:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(fp32, out, weight_type=QuantType.QUInt8)
    paths['uint8'] = out
  tokenizer = train.tokenizer_path(workdir, group.name)
  if os.path.exists(tokenizer):
    shutil.copyfile(tokenizer, os.path.join(os.path.dirname(os.path.abspath(out)),
                                            'tokenizer.json'))
  report = {'workdir': workdir, 'run': group.runs[index]['name'], 'step': int(found),
            'opset': OPSET, 'parameters': int(sum(x.size for x in jax.tree.leaves(params)))}
  for kind, path in paths.items():
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    report[kind] = {'path': path, 'bytes': os.path.getsize(path),
                    **check(session, model, prog)}
  with open(out + '.check.json', 'w') as f:
    json.dump(report, f, indent=1)
  return report


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  try:
    report = export(FLAGS.workdir, FLAGS.out, FLAGS.run, FLAGS.step, FLAGS.quantize)
  except ConfigError as e:
    cli.fail(str(e))
  print(f"{report['run']} step {report['step']}: {report['parameters']:,} parameters, "
        f'opset {OPSET}')
  for kind in ('fp32', 'uint8'):
    if kind in report:
      r = report[kind]
      print(f"{kind}: {r['path']} {r['bytes'] / 2**20:.1f} MiB; max |logit diff| vs JAX "
            f"{r['max_abs_logit_diff']:.2e}; greedy {N_GREEDY} tokens identical for "
            f"{r['greedy_identical_prompts']} prompts ({r['greedy_tokens_agreeing']} tokens)")
  fp = report['fp32']
  if fp['max_abs_logit_diff'] > TOL or fp['greedy_identical_prompts'].split('/')[0] != \
      fp['greedy_identical_prompts'].split('/')[1]:
    cli.fail(f'the float ONNX model does not match JAX (max |diff| {fp["max_abs_logit_diff"]:.2e},'
             f' greedy {fp["greedy_identical_prompts"]})', 1)


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'A trained tinyjax workdir (a transformer).')
  flags.DEFINE_string('out', None, 'The .onnx file to write.')
  flags.DEFINE_string('run', None, 'Run name (see summary.json); default: the first run.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default: the newest.')
  flags.DEFINE_string('quantize', None, 'uint8: dynamic uint8 quantization (as the original).')
  flags.mark_flags_as_required(['workdir', 'out'])
  FLAGS = flags.FLAGS
  app.run(main, flags_parser=cli.parse_flags)
