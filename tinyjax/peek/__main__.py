"""python -m tinyjax.peek --workdir W [--run R] [--step S] --out DIR

Writes peek's JSON export of one run (tiny-llm's export_for_web.py files) and a
trajectory over its checkpoints with a static page: open DIR/index.html.
"""

from absl import app
from absl import flags
from absl import logging

from tinyjax import cli

flags.DEFINE_string('workdir', None, 'A tinyjax workdir.')
flags.DEFINE_string('out', None, 'Output directory for the JSON files and the page.')
flags.DEFINE_string('run', None, 'Run name (see summary.json); default: the first run.')
flags.DEFINE_integer('step', None, 'Checkpoint of the peek files; default: the newest.')
flags.DEFINE_string('probe', 'ROMEO: To be', 'Text of attention.json and the trajectory.')
flags.DEFINE_string('predict', 'ROMEO', 'Text of predictions.json and hidden_state.json.')
flags.DEFINE_string('sample_prompt', None, 'Prompt of the samples in training.json '
                    '(default: the first of eval.prompts).')
flags.DEFINE_integer('seed', 0, 'PRNG seed of the samples (temperature 1).')
flags.DEFINE_bool('trajectory', True, 'Also write trajectory.js and index.html.')
flags.DEFINE_integer('max_checkpoints', 24, 'At most this many checkpoints in the trajectory.')
flags.mark_flags_as_required(['workdir', 'out'])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  from tinyjax import peek
  from tinyjax.tasks import ConfigError
  try:
    res = peek.export(FLAGS.workdir, FLAGS.out, FLAGS.run, FLAGS.step, FLAGS.probe,
                      FLAGS.predict, FLAGS.sample_prompt, FLAGS.trajectory, FLAGS.seed,
                      FLAGS.max_checkpoints)
  except ConfigError as e:
    cli.fail(str(e))
  print(f'peek export of step {res["step"]} ({len(res["steps"])} checkpoints) in {FLAGS.out}: '
        + ' '.join(res['files']) + ' (validated)')
  if FLAGS.trajectory:
    print(f'open {FLAGS.out}/index.html in a browser')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
