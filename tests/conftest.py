import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.fixture
def timmy():
  """The Timmy config, shrunk for tests where the test says so."""
  from configs import timmy as timmy_cfg
  return timmy_cfg.get_config()


@pytest.fixture(scope='session')
def chat_workdir(tmp_path_factory):
  """GuppyLM :smoke trained for 20 steps with the published tokenizer (chat, export)."""
  from configs import guppylm
  from tinyjax import train
  c = guppylm.get_config('smoke')
  with c.unlocked():
    c.task.tokenizer.path = 'tinyjax/data/guppylm_tokenizer.json.xz'
  w = str(tmp_path_factory.mktemp('chat') / 'w')
  train.train_and_evaluate(c, w, progress=False)
  return w


def run_cli(*args, timeout=300, env=None):
  import subprocess
  e = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, env=e)
