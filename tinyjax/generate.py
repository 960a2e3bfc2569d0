"""python -m tinyjax.generate --workdir DIR --prompt blue [--run lr=0.1/seed=3]

Greedy continuation from a trained workdir's newest checkpoint (or --step),
until EOS or --max_new_tokens (100, as the original Timmy script).
"""

from absl import app
from absl import flags
from absl import logging

from tinyjax import cli

flags.DEFINE_string('workdir', None, 'A tinyjax workdir.')
flags.DEFINE_multi_string('prompt', None, 'Prompt text (repeat the flag for several).')
flags.DEFINE_string('run', None, 'Run name (see summary.json); default: the first run.')
flags.DEFINE_integer('step', None, 'Checkpoint step; default: the newest.')
flags.DEFINE_integer('max_new_tokens', 100, 'Generation cap.')
flags.mark_flags_as_required(['workdir', 'prompt'])
FLAGS = flags.FLAGS


def generate(workdir: str, prompts, run: str | None = None, step: int | None = None,
             max_new_tokens: int = 100) -> dict[str, str]:
  """{prompt: completion} of one run of a workdir."""
  import jax
  from tinyjax import checkpoint as ckpt_lib
  from tinyjax import program as program_lib
  from tinyjax import sweep as sweep_lib
  from tinyjax import train
  from tinyjax.tasks import ConfigError
  config = train.load_config(workdir)
  groups = sweep_lib.expand(config)
  names = [r['name'] for g in groups for r in g.runs]
  name = run or names[0]
  if name not in names:
    raise ConfigError(f'--run: {name!r} is not a run of {workdir}; runs: {names[:8]}'
                      + (' ...' if len(names) > 8 else ''))
  group = next(g for g in groups if any(r['name'] == name for r in g.runs))
  index = [r['name'] for r in group.runs].index(name)
  prog = program_lib.Program(group.config, train.build_task(group.config))
  try:
    prog.encode_prompts(prompts)  # OOV text fails before the checkpoint is read
  except ConfigError as e:
    raise ConfigError(f'--prompt: {e}') from None
  hp_np = program_lib.hparam_arrays([r['hparams'] for r in group.runs])
  mgr = ckpt_lib.manager(workdir, group.name, read_only=True)
  found, state = ckpt_lib.restore_latest(mgr, ckpt_lib.numpy_target(prog.init, hp_np), step,
                                        move_unreadable=False)
  if state is None:
    raise ConfigError(f'--workdir {workdir}: no readable checkpoint'
                      + (f' at step {step}' if step is not None else ''))
  params = jax.tree.map(lambda x: x[index:index + 1], state['params'])
  return prog.generations(params, max_new_tokens, prompts)[0]


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  from tinyjax.tasks import ConfigError
  try:
    out = generate(FLAGS.workdir, FLAGS.prompt, FLAGS.run, FLAGS.step, FLAGS.max_new_tokens)
  except ConfigError as e:
    cli.fail(str(e))
  for prompt, text in out.items():
    print(text if len(out) == 1 else f'{prompt}{text}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
