"""babyLLM without tinyjax: the write-up's (4-token context -> next token) pairs,
a plain JAX MLP and full-batch gradient descent, as a check on configs/babyllm.py.

  python experiments/babyllm_independent.py   # 16 seeds, about a minute on a CPU

Same choices as the config (embedding 16 N(0, 1), tanh hidden 64 LeCun normal,
lr 0.3, 3000 steps) but none of its code: prints each seed's training fit and
its answer after `4+4=`.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np

VOCAB = [' ', '+'] + list('0123456789') + ['=']
ID = {t: i for i, t in enumerate(VOCAB)}


def pairs(context=4):
  """Every window of `context` tokens inside a line -> the token after it."""
  x, y = [], []
  for a in range(10):
    for b in range(10):
      if (a, b) == (4, 4):
        continue
      ids = [ID[ch] for ch in f'{a}+{b}={a + b} ']
      for i in range(len(ids) - context):
        x.append(ids[i:i + context])
        y.append(ids[i + context])
  return jnp.array(x), jnp.array(y)


def init(key, embed=16, hidden=64, context=4, vocab=13):
  k1, k2, k3 = jax.random.split(key, 3)
  return {'C': jax.random.normal(k1, (vocab, embed)),
          'W1': jax.random.normal(k2, (context * embed, hidden)) / np.sqrt(context * embed),
          'b1': jnp.zeros(hidden),
          'W2': jax.random.normal(k3, (hidden, vocab)) / np.sqrt(hidden),
          'b2': jnp.zeros(vocab)}


def forward(p, x_NxC):
  h_NxH = jnp.tanh(p['C'][x_NxC].reshape(x_NxC.shape[0], -1) @ p['W1'] + p['b1'])
  return h_NxH @ p['W2'] + p['b2']


def main():
  x, y = pairs()
  loss = lambda p: -jnp.mean(jax.nn.log_softmax(forward(p, x))[jnp.arange(len(y)), y])
  grad = jax.grad(loss)

  @jax.jit
  def train(key):
    step = lambda i, p: jax.tree.map(lambda w, g: w - 0.3 * g, p, grad(p))
    return jax.lax.fori_loop(0, 3000, step, init(key))

  prompt = jnp.array([[ID[ch] for ch in '4+4=']])
  answers = collections.Counter()
  print(f'{len(y)} training pairs')
  for seed in range(16):
    p = train(jax.random.key(seed))
    right = int((forward(p, x).argmax(-1) == y).sum())
    answer = VOCAB[int(forward(p, prompt).argmax())]
    answers[answer] += 1
    print(f'seed {seed:2d}: loss {float(loss(p)):.4f}, {right}/{len(y)} pairs right, '
          f'4+4= -> {answer!r}')
  print('answers after 4+4=:', dict(answers.most_common()))


if __name__ == '__main__':
  main()
