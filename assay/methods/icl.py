"""In-context linear regression: a transformer trained from scratch against classic estimators.

Tasks (Garg et al. 2022, arXiv 2208.01066): a weight vector ``w ~ N(0, I_d)``, inputs
``x_i ~ N(0, I_d)`` (times ``scale`` in a stress test) and targets ``y_i = w . x_i``. The
model reads the prompt ``x_1, y_1, x_2, y_2, ...`` as one vector per token (an ``x`` token
is ``(x, 0)``, a ``y`` token ``(0, ..., 0, y)``) through ``inputs_embeds`` of a Llama-
architecture backbone, and predicts ``y_i`` at the token of ``x_i``, having seen the
``i - 1`` earlier pairs.

The estimators it is compared with see the same earlier pairs (`baselines`): least squares
(minimum-norm when underdetermined), ridge, one step of gradient descent from zero
(von Oswald et al. 2023, arXiv 2212.07677; its step size tuned per prompt length on
separate tasks), k nearest neighbours and the mean of the earlier targets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from assay.errors import AssayError

__all__ = ["BASELINES", "RegressionTransformer", "Tasks", "baselines", "predict",
           "sample_tasks", "squared_error", "train_regressor"]

BASELINES = ("least squares", "ridge", "one GD step", "3 nearest neighbours", "mean")


@dataclass(frozen=True)
class Tasks:
    """``n`` regression prompts of ``k`` points in ``d`` dimensions."""

    xs: np.ndarray  # (n, k, d)
    ys: np.ndarray  # (n, k)
    w: np.ndarray   # (n, d)


def sample_tasks(n: int, k: int, d: int, seed: int, scale: float = 1.0) -> Tasks:
    """Seeded tasks; ``scale`` multiplies the inputs (1 is the training distribution)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, d))
    xs = scale * rng.standard_normal((n, k, d))
    return Tasks(xs, np.einsum("nkd,nd->nk", xs, w), w)


class RegressionTransformer(nn.Module):
    """A Llama backbone between a linear read-in of (x, y) tokens and a linear read-out."""

    def __init__(self, d: int, d_model: int = 64, n_layer: int = 4, n_head: int = 4,
                 max_points: int = 64):
        super().__init__()
        from transformers import LlamaConfig, LlamaModel

        config = LlamaConfig(hidden_size=d_model, num_hidden_layers=n_layer,
                             num_attention_heads=n_head, num_key_value_heads=n_head,
                             intermediate_size=4 * d_model, vocab_size=8,
                             max_position_embeddings=2 * max_points)
        self.d, self.max_points = d, max_points
        self.backbone = LlamaModel(config)
        self.read_in = nn.Linear(d + 1, d_model)
        self.read_out = nn.Linear(d_model, 1)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """(B, K) predictions of each ``y_i`` from ``x_i`` and the pairs before it."""
        B, K, d = xs.shape
        if d != self.d or K > self.max_points:
            raise AssayError(f"this model reads up to {self.max_points} points of dimension "
                             f"{self.d}; got {K} of dimension {d}")
        tokens = torch.zeros(B, 2 * K, d + 1, dtype=xs.dtype, device=xs.device)
        tokens[:, 0::2, :d] = xs
        tokens[:, 1::2, d] = ys
        h = self.backbone(inputs_embeds=self.read_in(tokens)).last_hidden_state  # (B, 2K, D)
        return self.read_out(h[:, 0::2])[..., 0]


def train_regressor(d: int, k: int, steps: int, seed: int, batch_size: int = 64,
                    lr: float = 1e-3, d_model: int = 64, n_layer: int = 4, n_head: int = 4,
                    on_progress: Callable[[int, float], None] | None = None
                    ) -> tuple[RegressionTransformer, list[float]]:
    """A model trained from scratch on fresh tasks every step (seeded); returns it and its
    loss curve (mean squared error over all positions, per step)."""
    from assay.training.trainer import TrainConfig, lr_at, make_optimizer

    torch.manual_seed(seed)
    model = RegressionTransformer(d, d_model, n_layer, n_head, max_points=k)
    cfg = TrainConfig(steps=steps, lr=lr, warmup=min(100, steps // 10), weight_decay=0.0)
    opt = make_optimizer(model, cfg)
    rng = np.random.default_rng(seed)
    curve = []
    model.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        w = rng.standard_normal((batch_size, d))
        xs = rng.standard_normal((batch_size, k, d))
        ys = np.einsum("nkd,nd->nk", xs, w)
        x_t, y_t = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys, dtype=torch.float32)
        loss = ((model(x_t, y_t) - y_t) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
        if on_progress is not None and (step + 1) % 50 == 0:
            on_progress(step + 1, float(np.mean(curve[-50:])))
    model.eval()
    return model, curve


@torch.no_grad()
def predict(model: RegressionTransformer, tasks: Tasks, batch_size: int = 256) -> np.ndarray:
    """(n, k) the model's prediction at every position of every task."""
    out = []
    for start in range(0, len(tasks.xs), batch_size):
        xs = torch.tensor(tasks.xs[start:start + batch_size], dtype=torch.float32)
        ys = torch.tensor(tasks.ys[start:start + batch_size], dtype=torch.float32)
        out.append(model(xs, ys).double().numpy())
    return np.concatenate(out)


def baselines(tasks: Tasks, tuning: Tasks | None = None, ridge: float = 0.5,
              neighbours: int = 3) -> dict[str, np.ndarray]:
    """{name: (n, k)} each estimator's prediction of ``y_i`` from the pairs before it
    (0 when there are none). ``tuning`` tasks choose the GD step size per position."""
    n, k, d = tasks.xs.shape
    preds = {name: np.zeros((n, k)) for name in BASELINES}
    etas = _tune_gd(tuning if tuning is not None else tasks)
    for i in range(1, k):
        X, y, q = tasks.xs[:, :i], tasks.ys[:, :i], tasks.xs[:, i]  # (n, i, d), (n, i), (n, d)
        w_ls = np.einsum("nde,ne->nd", np.linalg.pinv(X), y)
        gram = np.einsum("nid,nie->nde", X, X) + ridge * np.eye(d)
        w_ridge = np.linalg.solve(gram, np.einsum("nid,ni->nd", X, y)[..., None])[..., 0]
        w_gd = etas[i] * np.einsum("nid,ni->nd", X, y)
        dist = np.linalg.norm(X - q[:, None], axis=-1)  # (n, i)
        near = np.argsort(dist, axis=1)[:, :neighbours]
        preds["least squares"][:, i] = np.einsum("nd,nd->n", q, w_ls)
        preds["ridge"][:, i] = np.einsum("nd,nd->n", q, w_ridge)
        preds["one GD step"][:, i] = np.einsum("nd,nd->n", q, w_gd)
        preds["3 nearest neighbours"][:, i] = np.take_along_axis(y, near, 1).mean(1)
        preds["mean"][:, i] = y.mean(1)
    return preds


def _tune_gd(tasks: Tasks) -> np.ndarray:
    """Per position i, the step size of one GD step from zero that minimises the error."""
    n, k, d = tasks.xs.shape
    etas = np.zeros(k)
    for i in range(1, k):
        X, y, q = tasks.xs[:, :i], tasks.ys[:, :i], tasks.xs[:, i]
        g = np.einsum("nd,nid,ni->n", q, X, y)  # prediction per unit step size
        target = tasks.ys[:, i]
        etas[i] = float((g * target).sum() / max((g * g).sum(), 1e-12))  # least-squares step
    return etas


def squared_error(pred: np.ndarray, tasks: Tasks) -> np.ndarray:
    """(n, k) squared error divided by d (the zero predictor scores about 1 at scale 1)."""
    return (pred - tasks.ys) ** 2 / tasks.xs.shape[-1]
