import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Most tests compile the same few programs (Timmy's chunk, evaluation, sampler):
# JAX's persistent compilation cache, shared by the xdist workers and the
# subprocesses the CLI tests start (they inherit the environment), compiles
# each once. Keyed by the program, the jax version and the devices: never stale.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'tinyjax-tests-jax-cache'))
# Every program, not only those over JAX's default of 1 s: the evaluation,
# init and sampler programs that compile in under a second are otherwise
# compiled again by every worker and every CLI subprocess.
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

# xdist (pytest.ini: --dist loadfile --no-loadscope-reorder): each file is run
# whole by one worker (its module fixtures built once), but the files that use
# the session's GuppyLM workdir (chat_workdir), which go to one worker together
# so that it is trained once. The files are handed out longest first (the
# slowest tests of an earlier cold run; experiments/suite_time.py lists the
# seconds per file), so that no worker is left alone at the end with a long
# one; the rest in collection order. (xdist's own --dist loadgroup relies
# on a node attribute that pytest 9 no longer reads: the scheduler below.)
SHARED_GROUPS = {'test_chat.py': 'guppylm', 'test_export.py': 'guppylm',
                 'test_export_onnx.py': 'guppylm'}
LONGEST_FIRST = ('guppylm', 'test_bench_suite.py', 'test_lenses.py', 'test_docs.py',
                 'test_train.py', 'test_corpus.py', 'test_sweep.py', 'test_cost.py')


def _group(nodeid):
  name = nodeid.split('::', 1)[0].replace(os.sep, '/').rsplit('/', 1)[-1]
  return SHARED_GROUPS.get(name, name)


def pytest_collection_modifyitems(config, items):
  rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))  # stable


def pytest_xdist_make_scheduler(config, log):
  if config.getvalue('dist') != 'loadfile':
    return None  # xdist's own choice

  from xdist.scheduler import LoadScopeScheduling

  class FileGroups(LoadScopeScheduling):
    def _split_scope(self, nodeid):
      return _group(nodeid)
  return FileGroups(config, log)


# The step lenses cost compilation in every test that trains; tests/test_lenses.py
# turns them on where they are the subject.
LENSES_OFF = ('attention', 'probe', 'copying', 'geometry', 'icl', 'fourier')
LENSES_OFF_FLAGS = tuple(f'--config.lenses.{k}=False' for k in LENSES_OFF)


def lenses_off(c):
  """c with the step lenses off (c's `lenses` section replaced or added)."""
  import ml_collections
  with c.unlocked():
    c.lenses = ml_collections.ConfigDict({**dict(c.get('lenses', {})),
                                          **{k: False for k in LENSES_OFF}})
  return c


@pytest.fixture
def timmy():
  """The Timmy config with the step lenses off, shrunk where the test says so."""
  from configs import timmy as timmy_cfg
  return lenses_off(timmy_cfg.get_config())


@pytest.fixture(scope='session')
def chat_workdir(tmp_path_factory):
  """GuppyLM :smoke trained for 20 steps with the published tokenizer (chat, export)."""
  from configs import guppylm
  from tinyjax import train
  c = lenses_off(guppylm.get_config('smoke'))
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
