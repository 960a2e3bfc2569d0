"""Your own task, model and lenses, named from a config: the three contracts.

`config.task.name`, `config.model.name` and each entry of `config.lenses.extra`
is a spec, one of
  'repeat'                   a built-in (the registries: tinyjax.tasks.TASKS,
                             tinyjax.model.MODELS, tinyjax.lenses.LENSES)
  'package.module:attr'      imported
  'path/to/file.py:attr'     loaded from a file; a relative path is relative to
                             the config file's directory (tinyjax.api.load_config
                             and tinyjax.run make it absolute when they load the
                             config; a config built in Python: the current one)
Built-ins and your own go through the same `resolve`; the registries are
names for objects, not a second path.

Every contract is checked once per config before anything is written to the
workdir (`check`, on shapes only: jax.eval_shape of one run); a broken one is
one line naming the contract and what was wrong (a ConfigError: exit status 2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from typing import Any, Protocol, runtime_checkable

from tinyjax.tasks.base import ConfigError, Task

# ------------------------------------------------------------- contracts ---


@runtime_checkable
class TaskFn(Protocol):
  """A task: `fn(cfg) -> tinyjax.tasks.Task`, cfg = config.task.

  The Task (tinyjax/tasks/base.py) holds the vocabulary (`tokens`, `len`,
  `encode`, `decode`, `eos_id`: tinyjax.tasks.Vocab), the training source and
  the eval sources (each a Split of fixed rows, a Stream of token windows, or
  your own class with the same three methods: `arrays()` -> dict of numpy
  arrays put on the device once, `batch(arrays, key, step, batch_size)` and
  `evaluate(metrics_fn, arrays, key)`, traced per run, plus `seq_len`), the
  token classes (per-class losses: `loss/<class>`), the prompts and expected
  completions (tracked generations: `generation/<prompt>`), and optionally
  its own per-token loss (`Task.loss`, default cross-entropy).

  A batch is {'x_NxT', 'y_NxT', 'cls_NxT': int32, 'mask_NxT', 'valid_NxT':
  float32}, all [N, T]. A task that trains a tokenizer also takes
  `tokenizer_path` (the workdir's saved tokenizer.json, to resume with it) and
  its vocabulary has `save(path)`.
  """

  def __call__(self, cfg) -> Any: ...


@runtime_checkable
class ModelClass(Protocol):
  """A model: `cls(cfg, vocab_size, max_len, *, rngs) -> nnx.Module`, cfg =
  config.model, rngs = an nnx.Rngs drawn from the run's seed.

  Calling the module on tokens_BxT int32 returns (logits_BxTxV float, aux dict).
  aux may hold what the attention lenses read: 'attn_entropy_LxBxHxT' and
  'attn_first_LxBxHxT' (per layer, row, head, query position). Optional:
  `__call__(tokens, inspect=True)` adding 'attn_LxBxHxTxT' (the probe lenses),
  a `dropout_key` argument (model.dropout > 0), `validate_config(cfg,
  vocab_size, max_len)` (a classmethod raising ConfigError on bad fields), and
  `init_cache(batch, size)` + `decode(tokens_BxT, pos_B, cache) -> (logits,
  cache)` for generation (without them tinyjax.generate says so, exit 2).
  """

  def __call__(self, cfg, vocab_size: int, max_len: int, *, rngs) -> Any: ...


@dataclasses.dataclass
class LensInput:
  """What a lens sees of one run at one logged step (all traced, one run)."""
  model: Any            # the nnx.Module at the current parameters
  params: dict          # its parameters as a plain nested dict
  batch: dict           # this step's training batch (x_NxT, y_NxT, mask_NxT, ...)
  logits: Any           # the model's logits on batch['x_NxT']
  aux: dict             # the model's aux on it
  step: Any             # int32 scalar
  hp: dict              # the run's traced hyperparameters (seed, lr, ...)
  config: Any           # the whole config (static)
  program: Any = None   # the tinyjax.program.Program (static facts: task, probe, ...)
  _init: Any = None     # () -> the parameters at step 0 (computed on use)

  @property
  def init_params(self) -> dict:
    """The run's parameters at step 0, as a plain nested dict."""
    return self._init()


@runtime_checkable
class Lens(Protocol):
  """A lens: `fn(x: LensInput) -> {name: scalar}`, pure, for ONE run.

  tinyjax vmaps it over the runs and calls it inside the jitted step at every
  logged step (every lenses.every steps; every step when a milestone watches
  it). Each value must be a float scalar (shape ()); it is written as the
  metric `lens/<lens name>/<name>` (the lens name: its attribute name), which
  milestones, TensorBoard, metrics.jsonl and tinyjax.results.load see like
  any other metric. The built-in step lenses (tinyjax.lenses.LENSES: attention,
  probe, copying, geometry, fourier, icl) are lenses of this kind too, switched
  by their lenses.<name> setting and written under the names they always had
  (some per layer and head, `_LxH`); named in lenses.extra they are written
  under lens/<name>/ like yours.
  """

  def __call__(self, x: LensInput) -> dict: ...


# -------------------------------------------------------------- resolver ---
FIELDS = {'task': 'task.name', 'model': 'model.name', 'lens': 'lenses.extra'}


def is_file_spec(spec: str) -> bool:
  return ':' in spec and spec.rsplit(':', 1)[0].endswith('.py')


def absolute_spec(spec: str, base_dir: str) -> str:
  """'file.py:attr' relative to base_dir as an absolute path; others as they are."""
  if not isinstance(spec, str) or not is_file_spec(spec):
    return spec
  path, attr = spec.rsplit(':', 1)
  return f'{os.path.normpath(os.path.join(base_dir, path))}:{attr}'


def absolute_specs(config, base_dir: str):
  """config with the relative file specs of task.name, model.name and
  lenses.extra made absolute against base_dir (the config file's directory)."""
  with config.unlocked():
    for section in ('task', 'model'):
      if section in config and 'name' in config[section]:
        config[section].name = absolute_spec(config[section].name, base_dir)
    if 'lenses' in config and 'extra' in config.lenses:
      config.lenses.extra = tuple(absolute_spec(s, base_dir) for s in config.lenses.extra)
  return config


def _load_file(path: str):
  """The module of a .py file, loaded once per path (its name is derived from
  the path, so two files called task.py do not collide)."""
  name = 'tinyjax_user_' + hashlib.sha1(path.encode()).hexdigest()[:12]
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
      spec.loader.exec_module(module)
    except BaseException:
      del sys.modules[name]
      raise
  return sys.modules[name]


def resolve(kind: str, spec, builtins: dict) -> Any:
  """The object a spec names (see the module docstring): one of `builtins`
  (its kind's built-ins by name: tasks.TASKS, model.MODELS, lenses.LENSES,
  passed by those modules, which import this one) or the user's; ConfigError
  naming the field otherwise."""
  field = FIELDS[kind]
  if not isinstance(spec, str) or not spec:
    raise ConfigError(f'{field}: {spec!r} is not allowed; use a built-in {kind} '
                      f"{sorted(builtins)}, 'package.module:attr' or 'file.py:attr'")
  if ':' not in spec:
    if spec not in builtins:
      raise ConfigError(f'{field}: {spec!r} is not a known {kind}; choose one of '
                        f"{sorted(builtins)}, or name your own as 'package.module:attr' "
                        "or 'path/to/file.py:attr'")
    return builtins[spec]
  where, attr = spec.rsplit(':', 1)
  try:
    if is_file_spec(spec):
      path = os.path.abspath(where)
      if not os.path.isfile(path):
        raise ConfigError(f'{field}: {spec!r}: no such file {path}')
      module = _load_file(path)
    else:
      module = importlib.import_module(where)
  except ConfigError:
    raise
  except Exception as e:  # the user's module fails on import: say how, in one line
    raise ConfigError(f'{field}: {spec!r}: {where} cannot be imported '
                      f'({type(e).__name__}: {_one_line(e)})') from None
  if not hasattr(module, attr):
    raise ConfigError(f'{field}: {spec!r}: {where} has no attribute {attr!r}')
  obj = getattr(module, attr)
  if not callable(obj):
    raise ConfigError(f'{field}: {spec!r} is a {type(obj).__name__}, not a {kind} '
                      f'({_CONTRACT[kind]})')
  return obj


_CONTRACT = {'task': 'task contract: fn(cfg) -> tinyjax.tasks.Task',
             'model': 'model contract: cls(cfg, vocab_size, max_len, *, rngs) -> nnx.Module '
                      'returning (logits_BxTxV, aux)',
             'lens': 'lens contract: fn(x: tinyjax.extend.LensInput) -> {name: float scalar}'}


def _one_line(e) -> str:
  return ' '.join(str(e).split())[:200]


def lens_name(spec: str) -> str:
  """A lens's name in its metrics: the attribute (or built-in) name."""
  return spec.rsplit(':', 1)[-1]


def extra_lenses(config, builtins: dict) -> list[tuple[str, Any]]:
  """[(name, fn)] of config.lenses.extra (builtins: lenses.LENSES);
  ConfigError on a duplicate name."""
  specs = tuple(config.lenses.get('extra', ())) if 'lenses' in config else ()
  out = []
  for spec in specs:
    name = lens_name(spec)
    if name in [n for n, _ in out]:
      raise ConfigError(f'lenses.extra: two lenses named {name!r}; their metrics '
                        f'(lens/{name}/...) would collide')
    out.append((name, resolve('lens', spec, builtins)))
  return out


def accepts(fn, arg: str) -> bool:
  """Whether fn (or a class's __init__ / a module's __call__) takes `arg`."""
  try:
    return arg in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return False


# ------------------------------------------------- checks (shapes only) ---
BATCH_DTYPES = {'x_NxT': 'int', 'y_NxT': 'int', 'cls_NxT': 'int', 'mask_NxT': 'float',
                'valid_NxT': 'float'}


def check_task(task, spec):
  """The object a task function returned, and its sources' methods."""
  where = f'task.name {spec!r}: task contract'
  if not isinstance(task, Task):
    raise ConfigError(f'{where}: returned a {type(task).__name__}, not a tinyjax.tasks.Task')
  for name, source in [('train', task.train), *task.evals.items()]:
    for method in ('arrays', 'batch', 'evaluate', 'seq_len'):
      if not hasattr(source, method):
        raise ConfigError(f'{where}: source {name!r} ({type(source).__name__}) has no '
                          f'{method!r} (a source has arrays(), batch(), evaluate(), seq_len)')
  for attr in ('tokens', 'encode', 'decode', 'eos_id'):
    if not hasattr(task.vocab, attr):
      raise ConfigError(f'{where}: its vocab ({type(task.vocab).__name__}) has no {attr!r}')


def check_batch(batch, what: str, spec: str, seq_len: int):
  """A batch's keys, shapes [N, T] and dtypes (abstract arrays)."""
  import jax.numpy as jnp
  where = f'task.name {spec!r}: task contract: {what}'
  if not isinstance(batch, dict) or set(batch) != set(BATCH_DTYPES):
    got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
    raise ConfigError(f'{where} has {got}; a batch has exactly {sorted(BATCH_DTYPES)}')
  shape = batch['x_NxT'].shape
  for k, kind in BATCH_DTYPES.items():
    v = batch[k]
    ok = jnp.issubdtype(v.dtype, jnp.integer if kind == 'int' else jnp.floating)
    if len(v.shape) != 2 or v.shape != shape or not ok:
      raise ConfigError(f'{where}: {k} is {v.dtype}{list(v.shape)}; want {kind} [N, T] like '
                        f'x_NxT {list(shape)}')
  if shape[1] > seq_len:
    raise ConfigError(f'{where}: T = {shape[1]} is more than the source\'s seq_len {seq_len}')


def build_abstract(build, spec):
  """nnx.eval_shape of a model constructor, as the model contract: one line
  if it fails or does not return an nnx.Module."""
  from flax import nnx

  def checked():
    model = build()
    if not isinstance(model, nnx.Module):
      raise ConfigError(f'model.name {spec!r}: model contract: constructing it returned a '
                        f'{type(model).__name__}, not an nnx.Module')
    return model
  try:
    return nnx.eval_shape(checked)
  except ConfigError:
    raise
  except Exception as e:
    raise ConfigError(f'model.name {spec!r}: model contract: constructing it as cls(cfg, '
                      f'vocab_size, max_len, rngs=...) failed: {type(e).__name__}: '
                      f'{_one_line(e)}') from None


def check(prog, hp_1):
  """Every contract of a Program's config on one run, by shapes (jax.eval_shape):
  the task's batches, the model's outputs, each extra lens's outputs. hp_1:
  the config's hyperparameters as arrays of one run (program.hparam_arrays)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  config, task = prog.config, prog.task
  tspec, mspec = config.task.name, config.model.name
  # Shapes only, the key's too: a concrete key or hyperparameter would compile
  # small eager programs before a cold job's first step (check_group of a
  # 64-run Timmy sweep 0.39-0.42 s with them, 0.26-0.27 s without).
  hp = {k: jax.ShapeDtypeStruct((), np.asarray(v).dtype) for k, v in hp_1.items()}
  data = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), prog.data)
  key = jax.eval_shape(lambda: jax.random.key(0))

  def guarded(what, fn, *args):
    try:
      return jax.eval_shape(fn, *args)
    except ConfigError:
      raise
    except Exception as e:  # the user's code failed on abstract arrays
      raise ConfigError(f'{what} failed: {type(e).__name__}: {_one_line(e)}') from None

  batch = guarded(f'task.name {tspec!r}: task contract: train.batch(arrays, key, step, '
                  'batch_size)', lambda d, k: task.train.batch(d, k, 0, config.train.batch_size),
                  data['train'], key)
  check_batch(batch, 'train.batch()', tspec, task.train.seq_len)
  for i, (name, source) in enumerate(task.evals.items()):
    seen = []

    def metrics(b):
      seen.append(b)
      return {'x': jnp.zeros(())}
    guarded(f'task.name {tspec!r}: task contract: evals[{name!r}].evaluate(metrics_fn, arrays, '
            'key)', lambda d, k: source.evaluate(metrics, d, k), data[name], key)
    check_batch(seen[0], f'evals[{name!r}] batch', tspec, source.seq_len)

  state = guarded(f'model.name {mspec!r}: model contract: constructing it', prog._init_run, hp)
  out = guarded(f'model.name {mspec!r}: model contract: calling it on x_NxT',
                lambda p, x: prog.call(p, x), state['params'], batch['x_NxT'])
  where = f'model.name {mspec!r}: model contract'
  if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
    raise ConfigError(f'{where}: it returned {type(out).__name__}; return (logits_BxTxV, aux dict)')
  logits = out[0]
  want = (*batch['x_NxT'].shape, prog.vocab_size)
  if tuple(logits.shape) != want or not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ConfigError(f'{where}: logits are {logits.dtype}{list(logits.shape)}; want float '
                      f'[N, T, V] = {list(want)}')

  for name, fn in prog.extra_lenses:
    what = f'lenses.extra {name!r}: lens contract'
    m = guarded(what, lambda st, h, b: fn(prog.lens_input(st['params'], h, b, 0)), state,
                {**hp, 'w0': state['params']}, batch)
    if not isinstance(m, dict):
      raise ConfigError(f'{what}: it returned {type(m).__name__}; return {{name: float scalar}}')
    for k, v in m.items():
      if not isinstance(k, str) or not hasattr(v, 'shape'):
        raise ConfigError(f'{what}: entry {k!r} is {type(v).__name__}; '
                          'return {str: float scalar}')
      if tuple(v.shape) != () or not jnp.issubdtype(v.dtype, jnp.floating):
        raise ConfigError(f'{what}: {k!r} is {v.dtype}{list(v.shape)}; a lens returns float '
                          'scalars (shape ())')
