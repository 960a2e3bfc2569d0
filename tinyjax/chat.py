"""python -m tinyjax.chat --workdir W [--run R] [--step S] [--history]

A terminal chat with a trained chat-task workdir (GuppyLM). Tokens are printed
as they are sampled. Each turn is answered on its own, as the original's CLI
does; --history keeps the conversation, the oldest turns dropped to fit the
model's context. `/reset` forgets the history, `/quit` (or quit, exit, q)
ends. Temperature 0.7, top-k 50 and 64 new tokens by default, as the original.

With piped input (`echo "hi guppy" | python -m tinyjax.chat --workdir W`) it
answers each line once, one reply a line, and exits at the end of the input.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from tinyjax import cli

FLAGS = flags.FLAGS
QUIT = ('/quit', 'quit', 'exit', 'q')
BUCKET = 32  # prompts are padded to a multiple of this: few compilations


def _define_flags():
  """Only when run as a program: importing Chat defines no flags."""
  flags.DEFINE_string('workdir', None, 'A tinyjax workdir of a chat task.')
  flags.DEFINE_string('run', None, 'Run name (see summary.json); default: the first run.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default: the newest.')
  cli.define_sampling_flags(0.7, 50, 64, 'PRNG seed; turn t samples with key(seed + t).')
  flags.DEFINE_bool('history', False, 'Keep earlier turns in the prompt (within the context).')
  flags.mark_flags_as_required(['workdir'])


class Chat:
  """One run of a chat workdir and a sampler compiled for it."""

  def __init__(self, workdir, run=None, step=None, settings=None, max_new_tokens=64):
    import jax
    from flax import nnx
    from tinyjax import restore, sampler
    from tinyjax.tasks import ConfigError, chat
    self.prog, group, index = restore.open_run(workdir, run)
    if group.config.task.name != 'chat':
      raise ConfigError(f'--workdir {workdir}: task {group.config.task.name!r} is not a chat '
                        'task; use tinyjax.generate')
    self.step, params = restore.load_params(workdir, self.prog, group, index, step)
    self.params = jax.tree.map(lambda x: x[0], params)
    self.vocab, self.chat = self.prog.task.vocab, chat
    self.settings = (settings or sampler.Settings(0.7, 50)).arrays()
    self.context = self.prog.context or self.prog.max_len
    self.n_new = min(max_new_tokens, self.context - 1)
    self.turns: list[tuple[str, str]] = []
    self._stream = None
    prog, n_new = self.prog, self.n_new

    def reply(p, toks, length, key, settings):
      model = nnx.merge(prog.graphdef, p)
      return sampler.sample(model, toks, length, n_new, key, settings, prog.stop_ids,
                            prog.window, on_token=self._on_token)[0]
    self._reply = jax.jit(reply)

  def _on_token(self, tok_P, done_P):
    if self._stream is not None and not bool(done_P[0]):
      self._stream(int(tok_P[0]))

  def prompt_ids(self, message: str) -> list[int]:
    """The user turn in the inference layout, after as many earlier turns as
    fit (--history), so that the reply still fits the context."""
    ids = self.vocab.encode(self.chat.TEMPLATE.replace('{prompt}', message))
    room = self.context - self.n_new
    for user, bot in reversed(self.turns):
      past = self.vocab.encode(self.chat.render({'input': user, 'output': bot}) + '\n')
      if len(past) + len(ids) > room:
        break
      ids = past + ids
    return ids[-room:]

  def answer(self, message: str, seed: int, stream=None) -> str:
    import jax
    import numpy as np
    ids = self.prompt_ids(message)
    width = -(-len(ids) // BUCKET) * BUCKET
    toks = np.zeros((1, width), np.int32)
    toks[0, :len(ids)] = ids
    shown = []

    def on(tok):
      shown.append(tok)
      if stream:
        stream(self.clean(shown))
    self._stream = on
    try:
      out = np.asarray(self._reply(self.params, toks, np.asarray([len(ids)], np.int32),
                                   jax.random.key(seed), self.settings))[0]
    finally:
      self._stream = None
    text = self.clean(list(out))
    return text

  def clean(self, ids) -> str:
    """The reply: cut at the first <|im_end|> or <|im_start|>, stripped."""
    stops = {self.vocab.id(self.chat.END), self.vocab.id(self.chat.START)}
    cut = next((i for i, t in enumerate(ids) if int(t) in stops), len(ids))
    return self.vocab.decode(ids[:cut], stop_at_eos=False).strip()


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  from tinyjax.tasks import ConfigError
  try:
    bot = Chat(FLAGS.workdir, FLAGS.run, FLAGS.step, cli.sampling_settings(FLAGS),
               FLAGS.max_new_tokens)
  except ConfigError as e:
    cli.fail(str(e))
  piped = not sys.stdin.isatty()
  if not piped:
    print(f'{FLAGS.workdir}: {bot.prog.num_params:,} parameters, step {bot.step}. '
          '/reset forgets the conversation, /quit ends.' + (' (history on)' if FLAGS.history
                                                            else ''))
  turn = 0
  while True:
    if not piped:
      print('You> ', end='', flush=True)
    line = sys.stdin.readline()
    if not line:
      break
    message = line.strip()
    if not message:
      continue
    if message.lower() in QUIT:
      break
    if message == '/reset':
      bot.turns.clear()
      print('(history cleared)')
      continue
    if piped:
      reply = bot.answer(message, FLAGS.seed + turn)
      print(' '.join(reply.split('\n')), flush=True)  # one reply a line
    else:
      printed = ['']

      def stream(text):
        if text.startswith(printed[0]):
          sys.stdout.write(text[len(printed[0]):])
          sys.stdout.flush()
          printed[0] = text
      sys.stdout.write('Guppy> ')
      reply = bot.answer(message, FLAGS.seed + turn, stream)
      if reply != printed[0]:
        sys.stdout.write(reply[len(printed[0]):] if reply.startswith(printed[0]) else
                         '\n       ' + reply)
      print(flush=True)
    if FLAGS.history:
      bot.turns.append((message, reply))
    turn += 1


if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=cli.parse_flags)
