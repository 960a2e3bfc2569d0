"""Essential dynamics: PCA of one run's trajectory over its checkpoints
(devinterp's essential dynamics, its PR #75; Hoogland et al. 2024, "The
developmental landscape of in-context learning"): the features at each
checkpoint (here the model's logits on a fixed probe, flattened, or a
projection of its parameters) are centred over time, their principal
components found, and each checkpoint projected onto the first few. Cusps,
where development changes direction, are read from the projected curve.

Host-side numpy on a whole trajectory (it needs every checkpoint, so it runs
after training: experiments/essential_dynamics.py).
"""

from __future__ import annotations

import numpy as np


def trajectory_pca(x_TxF, k: int = 3):
  """PCA of a trajectory [T checkpoints, F features]. Returns
  (scores [T, k]: each checkpoint on the first k components,
   components [k, F] (unit rows, sign fixed so that the last checkpoint's
   score is >= 0), explained [k]: fraction of the variance about the
   trajectory's mean that each holds)."""
  x = np.asarray(x_TxF, np.float64)
  xc = x - x.mean(0, keepdims=True)
  u, s, vt = np.linalg.svd(xc, full_matrices=False)
  k = min(k, len(s))
  scores = u[:, :k] * s[:k]
  sign = np.where(scores[-1] < 0, -1.0, 1.0)
  total = float((s ** 2).sum())
  explained = (s[:k] ** 2) / total if total > 0 else np.zeros(k)
  return scores * sign, vt[:k] * sign[:, None], explained


def curvature(scores_TxK, t_T=None):
  """Unsigned curvature of the curve (PC1(t), PC2(t)) at each interior
  checkpoint: the turning angle between the chords in and out, divided by
  their mean length (a discrete kappa; the ends get 0). t_T is unused by the
  angle and kept for the caller's axis."""
  p = np.asarray(scores_TxK, np.float64)[:, :2]
  a, b = p[1:-1] - p[:-2], p[2:] - p[1:-1]
  na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
  cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
  angle = np.arccos(np.clip(cos, -1.0, 1.0))
  kappa = angle / np.maximum(0.5 * (na + nb), 1e-30)
  return np.concatenate([[0.0], np.where((na > 0) & (nb > 0), kappa, 0.0), [0.0]]), \
      np.concatenate([[0.0], angle, [0.0]])


def extrema(y_T, rel: float = 0.05):
  """Indices of the local extrema of a PC curve whose swing (to the
  neighbouring extremum or end on either side) exceeds rel x the curve's
  range: where that component changes direction."""
  y = np.asarray(y_T, np.float64)
  rng = float(y.max() - y.min())
  if rng == 0 or len(y) < 3:
    return []
  dy = np.diff(y)
  s = np.sign(dy)
  for i in range(1, len(s)):       # a flat step keeps the previous direction
    if s[i] == 0:
      s[i] = s[i - 1]
  turns = [i + 1 for i in range(len(s) - 1) if s[i] != 0 and s[i + 1] != 0 and s[i] != s[i + 1]]
  keep, pts = [], [0] + turns + [len(y) - 1]
  for j in range(1, len(pts) - 1):
    swing = min(abs(y[pts[j]] - y[pts[j - 1]]), abs(y[pts[j + 1]] - y[pts[j]]))
    if swing > rel * rng:
      keep.append(pts[j])
  return keep


def cusps(scores_TxK, min_angle: float = np.pi / 4):
  """Checkpoints where the (PC1, PC2) curve turns by more than min_angle
  between consecutive chords, and is a local maximum of the turning angle:
  the cusps / turns of the developmental trajectory."""
  _, angle = curvature(scores_TxK)
  return [i for i in range(1, len(angle) - 1)
          if angle[i] > min_angle and angle[i] >= angle[i - 1] and angle[i] >= angle[i + 1]]
