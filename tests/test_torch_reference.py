"""The PyTorch references (experiments/torch_models.py) and the speed
benchmark's pieces; skipped where torch is not installed (it is optional:
requirements-interop.txt)."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

torch = pytest.importorskip('torch')
sys.path.insert(0, os.path.join(ROOT, 'experiments'))

import torch_models  # noqa: E402
import torch_reference  # noqa: E402


def test_tiny_llm_reference_is_the_spec_model():
  model = torch_models.TinyLLM()
  names = [n for n, _ in model.named_parameters()]
  assert sum(p.numel() for p in model.parameters()) == 824_897
  assert len(names) == 94  # meta.json's tensors, in torch's order
  assert names[:5] == ['tok_emb.weight', 'pos_emb.weight', 'blocks.0.attn.heads.0.key.weight',
                       'blocks.0.attn.heads.0.query.weight', 'blocks.0.attn.heads.0.value.weight']
  assert names[-4:] == ['ln_f.weight', 'ln_f.bias', 'lm_head.weight', 'lm_head.bias']


def test_guppylm_reference_is_the_spec_model():
  model = torch_models.GuppyLM()
  assert sum(p.numel() for p in model.parameters()) == 8_726_016  # head tied: counted once
  assert model.lm_head.weight is model.tok_emb.weight


def test_reference_steps_train():
  """A few steps of each on tiny inputs lower the loss (the loops run)."""
  data = torch.randint(0, 65, (2_000,))
  step, _, _ = torch_models.tiny_llm_trainer(data)
  first = float(step())
  assert 4.0 < first < 4.8  # torch's default init: ~ln 65 + 0.17
  x = torch.randint(3, 4096, (64, 20))
  x[:, 15:] = 0  # right padding
  step, _, _, st = torch_models.guppy_trainer(x[:, :-1].numpy(), x[:, 1:].numpy(),
                                               (x[:, 1:] != 0).numpy(), batch_size=4)
  step()
  assert st['positions'] == 4 * 14  # cut to the batch's longest row, as the collate pads


def test_flop_formula():
  """tiny-llm: 6 x 794,752 x 4,096 + 12 x 4 x 32 x 128^2 x 128 FLOP a step."""
  from configs import tiny_llm
  c = tiny_llm.get_config()
  p = torch_reference.matmul_params(c, 65)
  assert p == 4 * (4 * 128 * 128 + 2 * 128 * 512) + 128 * 65 == 794_752
  assert torch_reference.flops(p, 4, 128, 32, 128) == 6 * p * 4096 + 12 * 4 * 32 * 128**2 * 128


def test_compile_cache_setting(tmp_path):
  """TINYJAX_COMPILATION_CACHE names the folder ('off' turns it off); the
  size cap that turns on JAX's lock for processes sharing it is set."""
  code = ('import jax; from tinyjax import compile_cache as c; p = c.enable(); '
          'print(p, jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size)')
  env = dict(os.environ, TINYJAX_COMPILATION_CACHE=str(tmp_path / 'cache'), PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  assert out == [str(tmp_path / 'cache')] * 2 + [str(4 << 30)]
  env['TINYJAX_COMPILATION_CACHE'] = 'off'
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  assert out[0] == 'None'
  # JAX's own setting (here the tests' shared folder) is used as JAX is configured.
  del env['TINYJAX_COMPILATION_CACHE']
  env['JAX_COMPILATION_CACHE_DIR'] = str(tmp_path / 'jax')
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       check=True).stdout.split()
  assert out == [str(tmp_path / 'jax')] * 2 + ['-1']
