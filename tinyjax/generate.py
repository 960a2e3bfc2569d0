"""python -m tinyjax.generate --workdir DIR --prompt blue [--run lr=0.1/seed=3]

The continuation of each prompt from a trained workdir's newest checkpoint (or
--step), until EOS or --max_new_tokens (default: the config's
eval.max_new_tokens; Timmy 100, tiny-llm 160). Greedy by default; sampling
with --temperature > 0, --top_k, --top_p and --seed (same seed, same text).
--constraint pilish forces the n-th new word to have as many letters as pi's
n-th digit (Pillmish; a word-level vocabulary); --beam K searches K
hypotheses for the continuation the model finds most likely (under the
constraint, if any) instead of sampling.
"""

from absl import app
from absl import flags
from absl import logging

from tinyjax import cli

flags.DEFINE_string('workdir', None, 'A tinyjax workdir.')
flags.DEFINE_multi_string('prompt', None, 'Prompt text (repeat the flag for several).')
flags.DEFINE_string('run', None, 'Run name (see summary.json); default: the first run.')
flags.DEFINE_integer('step', None, 'Checkpoint step; default: the newest.')
cli.define_sampling_flags(0.0, 0, None, 'PRNG seed of the sampling.')
flags.DEFINE_string('constraint', None, 'Constrained decoding: pilish (or none).')
flags.DEFINE_integer('beam', 0, 'Beam search with this many hypotheses (0 = sample).')
CONSTRAINTS = ('pilish',)
flags.mark_flags_as_required(['workdir', 'prompt'])
FLAGS = flags.FLAGS


def generate(workdir: str, prompts, run: str | None = None, step: int | None = None,
             max_new_tokens: int | None = None, settings=None, seed: int = 0,
             constraint: str | None = None, beam: int = 0) -> dict[str, str]:
  """{prompt: completion} of one run of a workdir (settings: a sampler.Settings,
  default greedy; constraint: None or 'pilish'; beam > 0: beam search)."""
  from tinyjax import sampler
  from tinyjax.tasks import ConfigError
  from tinyjax import restore
  prog, group, index = restore.open_run(workdir, run)
  try:
    prog.encode_prompts(prompts)  # OOV text fails before the checkpoint is read
  except ConfigError as e:
    raise ConfigError(f'--prompt: {e}') from None
  _, params = restore.load_params(workdir, prog, group, index, step)
  n_new = max_new_tokens or group.config.eval.max_new_tokens
  hook = None
  if constraint == 'pilish':
    from tinyjax import pilish
    hook = pilish.Pilish(prog.task.vocab.tokens, n_new)
  return prog.generations(params, n_new, prompts, settings or sampler.GREEDY, seed,
                          hook, beam)[0]


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  from tinyjax.tasks import ConfigError
  try:
    settings = cli.sampling_settings(FLAGS)
    if FLAGS.constraint not in (None, 'none', *CONSTRAINTS):
      raise ConfigError(f'--constraint: {FLAGS.constraint!r} is not a known constraint; '
                        f'choose one of {list(CONSTRAINTS)}')
    if FLAGS.beam < 0:
      raise ConfigError(f'--beam: {FLAGS.beam} is not allowed; use 0 (sample) or K >= 1')
    out = generate(FLAGS.workdir, FLAGS.prompt, FLAGS.run, FLAGS.step, FLAGS.max_new_tokens,
                   settings, FLAGS.seed, None if FLAGS.constraint == 'none' else FLAGS.constraint,
                   FLAGS.beam)
  except ConfigError as e:
    cli.fail(str(e))
  for prompt, text in out.items():
    print(text if len(out) == 1 else f'{prompt}{text}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
