"""ONNX export (GuppyLM's browser target): the graph computes the JAX model."""

import os

import jax
import numpy as np
import pytest

ort = pytest.importorskip('onnxruntime')  # requirements-export.txt; CI installs it

from flax import nnx  # noqa: E402

from tinyjax import export_onnx  # noqa: E402
from tinyjax import model as model_lib  # noqa: E402


def _session(proto):
  return ort.InferenceSession(proto.SerializeToString(), providers=['CPUExecutionProvider'])


def _session_at(path):
  return ort.InferenceSession(path, providers=['CPUExecutionProvider'])


@pytest.mark.parametrize('opts', [
    dict(positions='learned', norm='layernorm', activation='relu', tie_embeddings=True),
    dict(positions='sinusoidal', norm='standardize', activation='gelu', embed_scale=True,
         tie_embeddings=False, unembed_bias=True, attn_bias=False, mlp_bias=False),
    dict(positions='none', norm='rmsnorm', activation='silu', final_norm=False, d_mlp=0),
])
def test_the_graph_gives_the_models_logits_for_every_length_and_batch(opts):
  from configs import guppylm
  cfg = guppylm.get_config('smoke').model
  with cfg.unlocked():
    cfg.update(init_std=0.3, **opts)  # a large init: differences would show
  model = model_lib.build(cfg, 50, 16, nnx.Rngs(1))
  session = _session(export_onnx.build(model, 50, 16))
  rng = np.random.default_rng(0)
  for b, t in ((1, 1), (3, 7), (2, 16)):
    tokens = rng.integers(0, 50, (b, t))
    want = np.asarray(model(tokens.astype(np.int32))[0])
    got = session.run(['logits'], {'input_ids': tokens})[0]
    assert got.shape == (b, t, 50)
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=0)


def test_a_trained_chat_model_exports_checked_and_quantized(chat_workdir, tmp_path):
  out = str(tmp_path / 'onnx' / 'guppy.onnx')
  report = export_onnx.export(chat_workdir, out, quantize='uint8')
  fp32, q = report['fp32'], report['uint8']
  assert fp32['path'] == str(tmp_path / 'onnx' / 'guppy.fp32.onnx') and q['path'] == out
  assert fp32['max_abs_logit_diff'] <= export_onnx.TOL
  assert fp32['greedy_identical_prompts'] == '4/4'
  assert q['bytes'] < fp32['bytes'] / 2.5  # weights stored as one byte instead of four
  # What the README promises of the uint8 file: logits close to JAX's and the
  # same 20-token greedy continuations of the 4 prompts. Measured on this
  # model (logits within +-0.65, std 0.11): max |diff| 0.0096 (uint8 weights
  # and activations), 80/80 greedy tokens. 0.03 is 3x that and a quarter of
  # the logits' std: a quantized graph built from other weights (another
  # step, run or the init), a dropped bias or norm, or a wrong quantization
  # scale moves logits by 0.1-1.
  assert 0.0 < q['max_abs_logit_diff'] <= 0.03, q
  assert q['greedy_identical_prompts'] == '4/4' and q['greedy_tokens_agreeing'] == '80/80', q
  # The same bound read back here, not from the exporter's own check: the
  # uint8 file's logits against the float file's on other random tokens.
  tokens = np.random.default_rng(7).integers(0, 50, (3, 40))
  lf = _session_at(fp32['path']).run(['logits'], {'input_ids': tokens})[0]
  lq = _session_at(out).run(['logits'], {'input_ids': tokens})[0]
  assert 0.0 < np.abs(lq - lf).max() <= 0.03
  assert os.path.exists(tmp_path / 'onnx' / 'tokenizer.json')
  import tokenizers  # the copy beside the model is HF's format as it is
  hf = tokenizers.Tokenizer.from_file(str(tmp_path / 'onnx' / 'tokenizer.json'))
  assert hf.encode('<|im_start|>user\nhi guppy<|im_end|>').ids == [1, 88, 64, 779, 278, 2]
  assert os.path.exists(out + '.check.json')
  import onnx
  m = onnx.load(out)
  assert m.opset_import[0].version == 17
  assert [i.name for i in m.graph.input] == ['input_ids']
  assert [o.name for o in m.graph.output] == ['logits']
  dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
  assert dims == ['batch', 'seq_len']
  assert any(n.op_type == 'MatMulInteger' for n in m.graph.node)  # dynamically quantized


def test_export_mistakes_exit_2_with_one_line(chat_workdir, tmp_path):
  from tests.conftest import run_cli
  for args, needle in (
      (['--workdir', str(tmp_path), '--out', str(tmp_path / 'm.onnx')], 'config.json'),
      (['--workdir', chat_workdir, '--out', str(tmp_path / 'm.onnx'), '--quantize', 'int4'],
       '--quantize'),
      (['--workdir', chat_workdir, '--out', str(tmp_path)], '--out'),
      (['--workdir', chat_workdir, '--out', str(tmp_path / 'f' / 'm.onnx')], 'cannot be created')):
    (tmp_path / 'f').write_text('a file, not a directory')
    r = run_cli('-m', 'tinyjax.export_onnx', *args)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and needle in r.stderr, r.stderr
