"""The hidden-progress measure: where the first layer's weight goes.

A tinyjax lens (tinyjax.extend.Lens): one run's LensInput -> named float
scalars, vmapped over the runs by tinyjax and logged as lens/hidden_progress/*.

During the plateau the loss and the error sit at chance, but SGD keeps moving
weight onto the k relevant inputs (Barak et al.'s Fourier gap). Measured here:
  mass_S      fraction of the first layer's squared weight on the k inputs of S
              (k / n at init, in expectation; -> 1 as the MLP uses only S)
  norm_S      |W1[S]|: the weight on S (Frobenius)
  norm_rest   |W1[not S]| / sqrt((n - k) / k): the weight on as many other inputs
              (same scale as norm_S at init)
  dist_init   |theta - theta_0| over every parameter
"""

import jax
import jax.numpy as jnp


def hidden_progress(x):
  k, n = x.config.task.k, x.config.task.n
  w_NxH = x.params['hidden']['kernel']
  sq_N = jnp.sum(w_NxH ** 2, axis=1)
  dist = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(x.params),
                                                    jax.tree.leaves(x.init_params)))
  return {'mass_S': sq_N[:k].sum() / sq_N.sum(),
          'norm_S': jnp.sqrt(sq_N[:k].sum()),
          'norm_rest': jnp.sqrt(sq_N[k:].sum() * k / max(n - k, 1)),
          'dist_init': jnp.sqrt(dist)}
