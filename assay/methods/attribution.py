"""Training-data attribution: which training examples moved a query's loss, and by how much.

Every method returns a (queries, examples) score matrix with one sign convention: a positive
score means training on the example lowers the query's loss (the example supports the
query). Methods:

- `influence_scores`: influence functions through kronfluence, EK-FAC by default (or
  K-FAC, or the identity, which is the plain gradient dot product), with its factors
  written under ``cache_dir`` and reused when asked for again;
- `tracin_scores`: TracIn, the gradient dot product summed over saved checkpoints, each
  weighted by its learning rate;
- `gradient_scores`: the gradient dot product or cosine of per-example losses, with an
  optional CountSketch projection of the gradients (``project=k``: each parameter is hashed
  to one of k buckets with a random sign, so inner products are kept in expectation and
  memory is k floats per example);
- `bm25_scores`: a lexical baseline (Okapi BM25 through ``bm25s``), since attribution at
  small scale often tracks word overlap.

A model and its loss reach the gradient methods through a `LossSpec`: ``losses(model,
batch, sample)`` gives one loss per example in a batch (``sample=True``: targets drawn from
the model, for the true Fisher that K-FAC estimates). `LMLoss` is the spec for causal LMs
over `tokenized` examples; any ``nn.Module`` with a per-example loss works the same way.

Evaluation against truth: `recall_at_k` and `reciprocal_rank` against the set of examples
known to carry each query's fact, and the linear datamodeling score `lds`, which correlates
the scores' prediction for random training subsets with the loss of models retrained on
them (Park et al. 2023).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from assay.errors import AssayError

__all__ = ["LMLoss", "LossSpec", "bm25_scores", "gradient_scores", "influence_scores", "lds",
           "reciprocal_rank", "recall_at_k", "subset_masks", "tokenized", "tracin_scores"]


# ---- losses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossSpec:
    """``losses(model, batch, sample) -> (B,)``: each example's loss (training objective);
    ``measure(model, batch) -> (B,)``: the query quantity attributed (defaults to the loss)."""

    losses: Callable[[nn.Module, object, bool], torch.Tensor]
    measure: Callable[[nn.Module, object], torch.Tensor] | None = None

    def measurement(self, model: nn.Module, batch) -> torch.Tensor:
        return self.measure(model, batch) if self.measure else self.losses(model, batch, False)


def _lm_losses(model: nn.Module, batch: dict, sample: bool = False) -> torch.Tensor:
    """Summed next-token loss per sequence over the positions whose label is not -100."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    if sample:  # targets drawn from the model itself, where a label is scored
        with torch.no_grad():
            drawn = torch.distributions.Categorical(logits=logits).sample()
        labels = torch.where(labels == -100, labels, drawn)
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return nll.sum(1)


LMLoss = LossSpec(_lm_losses)


def tokenized(lm, texts: Sequence[str], prompts: Sequence[str] | None = None,
              length: int | None = None) -> list[dict]:
    """Examples for `LMLoss`: each text encoded as the wrapper encodes it (BOS first), padded
    to ``length`` (the longest by default). With ``prompts``, each example is prompt + text
    and only the text's tokens are scored (a query's answer given its question)."""
    rows, scored = [], []
    for i, text in enumerate(texts):
        if prompts is None:
            ids = lm.encode([text])[0]
            start = 1
        else:
            head = lm.encode([prompts[i]])[0]
            ids = head + lm.tokenizer(text, add_special_tokens=False)["input_ids"]
            start = len(head)
        rows.append(ids)
        scored.append(start)
    width = length or max(map(len, rows))
    if max(map(len, rows)) > width:
        raise AssayError(f"an example has {max(map(len, rows))} tokens, more than length={width}")
    out = []
    for ids, start in zip(rows, scored):
        pad = width - len(ids)
        labels = [-100] * start + ids[start:] + [-100] * pad
        out.append({"input_ids": torch.tensor(ids + [lm.pad_id] * pad),
                    "attention_mask": torch.tensor([1] * len(ids) + [0] * pad),
                    "labels": torch.tensor(labels)})
    return out


# ---- gradient methods -------------------------------------------------------------------------


def _collate(examples: Sequence) -> object:
    return torch.utils.data.default_collate(list(examples))


def _to(batch, device: torch.device):
    """``batch`` (a tensor, or a dict, list or tuple of them) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _per_example_grads(model: nn.Module, spec: LossSpec, examples: Sequence, *, measure: bool,
                       sketch: tuple[torch.Tensor, torch.Tensor, int] | None):
    """Each example's gradient of its loss (or measurement), flattened (P,), or (k,) when
    sketched, one at a time."""
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    for example in examples:
        batch = _to(_collate([example]), device)
        value = (spec.measurement(model, batch) if measure else spec.losses(model, batch, False)).sum()
        grads = torch.autograd.grad(value, params, allow_unused=True)
        flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for g, p in zip(grads, params)]).detach().cpu().double()
        if sketch is not None:
            bucket, sign, k = sketch
            flat = torch.zeros(k, dtype=flat.dtype).index_add_(0, bucket, flat * sign)
        yield flat


def gradient_scores(model: nn.Module, spec: LossSpec, queries: Sequence, examples: Sequence, *,
                    cosine: bool = False, project: int | None = None, seed: int = 0,
                    norms: bool = False):
    """(Q, N) gradient dot products (or cosines) between each query's measurement and each
    training example's loss, with ``project=k`` through a seeded CountSketch. The queries'
    gradients are held; each training example's is used and dropped, so memory is
    (Q + 1) gradients whatever N. ``norms=True`` returns (scores, query norms (Q,), example
    norms (N,)) instead, so one pass gives both the dot products and, divided by the outer
    product of the norms, the cosines."""
    if not queries or not examples:
        raise AssayError("gradient_scores needs at least one query and one example")
    sketch = None
    if project is not None:
        if project < 1:
            raise AssayError(f"project takes a positive number of buckets, got {project}")
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        gen = torch.Generator().manual_seed(seed)
        sketch = (torch.randint(project, (n,), generator=gen),
                  torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1, project)
    was_training = model.training
    model.eval()
    try:
        q = torch.stack(list(_per_example_grads(model, spec, queries, measure=True,
                                                sketch=sketch)))
        q_norms = q.norm(dim=1)
        if cosine:
            q = q / q_norms[:, None].clamp_min(1e-30)
        # written into one preallocated matrix: keeping N small result tensors alive between
        # the P-sized gradients pins glibc's heap and memory grew by a gradient per example
        out = torch.zeros(len(q), len(examples), dtype=torch.float64)
        g_norms = torch.zeros(len(examples), dtype=torch.float64)
        for j, g in enumerate(_per_example_grads(model, spec, examples, measure=False,
                                                 sketch=sketch)):
            g_norms[j] = g.norm()
            out[:, j] = q @ (g / g_norms[j].clamp_min(1e-30) if cosine else g)
    finally:
        model.train(was_training)
    if norms:
        return out.numpy(), q_norms.numpy(), g_norms.numpy()
    return out.numpy()


def tracin_scores(checkpoints: Sequence[tuple[nn.Module, float]], spec: LossSpec,
                  queries: Sequence, examples: Sequence, *, project: int | None = None,
                  seed: int = 0) -> np.ndarray:
    """(Q, N) TracIn over saved checkpoints (Pruthi et al. 2020, "TracInCP"): the sum over
    checkpoints of the learning rate there times the gradient dot product at those weights.
    Each term is the first-order drop of the query's loss from one gradient step on the
    example, so the sum follows the example's effect along the training run rather than at
    its end. ``checkpoints`` are (model, learning rate) pairs; ``project`` as in
    `gradient_scores`, with one sketch for every checkpoint."""
    if not checkpoints:
        raise AssayError("tracin_scores needs at least one (model, learning rate) checkpoint")
    total = None
    for model, lr in checkpoints:
        term = float(lr) * gradient_scores(model, spec, queries, examples, project=project,
                                           seed=seed)
        total = term if total is None else total + term
    return total


# ---- influence functions (kronfluence) ---------------------------------------------------------


def _kronfluence_task(spec: LossSpec, mask_key: str | None):
    from kronfluence.task import Task

    class _Task(Task):
        def compute_train_loss(self, batch, model, sample=False):
            return spec.losses(model, batch, sample).sum()

        def compute_measurement(self, batch, model):
            return spec.measurement(model, batch).sum()

        def get_attention_mask(self, batch):
            return batch[mask_key] if mask_key and isinstance(batch, dict) else None

    return _Task()


def influence_scores(model: nn.Module, spec: LossSpec, queries: Sequence, examples: Sequence,
                     cache_dir: str | Path, *, strategy: str = "ekfac",
                     damping: float | None = None, name: str = "influence",
                     batch_size: int = 16, seed: int = 0) -> np.ndarray:
    """(Q, N) influence of each training example on each query's measurement through
    kronfluence: ``strategy`` "ekfac" (default), "kfac", "diagonal" or "identity" (the
    gradient dot product). The model is copied, not modified; factors and scores are written
    under ``cache_dir/NAME-DIGEST``, where the digest covers the weights, the examples and the
    strategy, so factors are reused exactly when they would come out the same. ``damping`` None lets
    kronfluence pick 0.1 times the mean eigenvalue. The targets K-FAC samples are drawn
    from ``seed`` without touching the global random state."""
    try:
        from kronfluence.analyzer import Analyzer, prepare_model
    except ImportError:
        raise AssayError("influence_scores needs kronfluence: pip install --no-deps "
                         "kronfluence==1.0.1 (make does; with its dependencies pip would pull "
                         "a torchvision that breaks transformers)") from None

    if strategy not in ("ekfac", "kfac", "diagonal", "identity"):
        raise AssayError(f"unknown strategy {strategy!r}: use ekfac, kfac, diagonal or identity")
    if not re.fullmatch(r"[\w.-]+", name):
        raise AssayError(f"name {name!r} must be letters, digits, '.', '-' or '_' (a folder name)")
    mask_key = "attention_mask" if isinstance(examples[0], dict) and \
        "attention_mask" in examples[0] else None
    task = _kronfluence_task(spec, mask_key)
    model = copy.deepcopy(model).cpu().eval()  # kronfluence runs here on the CPU
    if isinstance(model, (nn.Linear, nn.Conv2d)):  # kronfluence replaces children, not the root
        model = nn.Sequential(model)
    tracked = prepare_model(model, task)
    digest = _fingerprint(model, examples, f"{strategy}-{seed}")
    analyzer = Analyzer(analysis_name=f"{name}-{digest}",
                        model=tracked, task=task, cpu=True,
                        disable_tqdm=True, output_dir=str(Path(cache_dir)), log_level=40)
    factors = f"factors_{strategy}"
    with torch.random.fork_rng(), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.filterwarnings("ignore", category=FutureWarning, module="kronfluence")
        return _fit_and_score(analyzer, factors, strategy, queries, examples, batch_size, damping)


def _fit_and_score(analyzer, factors: str, strategy: str, queries: Sequence, examples: Sequence,
                   batch_size: int, damping: float | None) -> np.ndarray:
    from kronfluence.arguments import FactorArguments, ScoreArguments

    analyzer.fit_all_factors(factors_name=factors, dataset=_Listed(examples),
                             per_device_batch_size=batch_size,
                             factor_args=FactorArguments(strategy=strategy),
                             overwrite_output_dir=False)
    analyzer.compute_pairwise_scores(
        scores_name=f"scores_{strategy}", factors_name=factors, query_dataset=_Listed(queries),
        train_dataset=_Listed(examples), per_device_query_batch_size=batch_size,
        per_device_train_batch_size=batch_size,
        score_args=ScoreArguments(damping_factor=damping), overwrite_output_dir=True)
    scores = analyzer.load_pairwise_scores(f"scores_{strategy}")["all_modules"]
    return scores.double().numpy()


def _fingerprint(model: nn.Module, examples: Sequence, strategy: str) -> str:
    h = hashlib.sha256(strategy.encode())
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for example in examples:
        parts = example.values() if isinstance(example, dict) else example
        for part in parts:
            h.update(torch.as_tensor(part).cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _Listed(torch.utils.data.Dataset):
    def __init__(self, items: Sequence) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


# ---- lexical baseline -------------------------------------------------------------------------


def bm25_scores(queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """(Q, N) Okapi BM25 scores (``bm25s``, lower-cased word tokens, no stemming or
    stop-word removal)."""
    import bm25s

    if not documents:
        raise AssayError("bm25_scores needs at least one document")
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its index build logs each call
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(documents), stopwords=None, show_progress=False),
                    show_progress=False)
    tokens = bm25s.tokenize(list(queries), stopwords=None, return_ids=False, show_progress=False)
    return np.stack([retriever.get_scores(t) if t else np.zeros(len(documents))
                     for t in tokens]).astype(np.float64)


# ---- evaluation against truth -------------------------------------------------------------------


def _ranks_of_truth(scores: np.ndarray, truth: Sequence[set[int]],
                    ties: int | None = None) -> list[np.ndarray]:
    """Per query, the 1-based ranks of its true examples. Ties are ranked pessimistically
    (a true example tied with others takes the worst of their ranks), or, with ``ties`` an
    integer seed, broken at random: a method that cannot tell examples apart then ranks the
    truth at chance instead of below it."""
    if len(truth) != scores.shape[0]:
        raise AssayError(f"{scores.shape[0]} queries but {len(truth)} truth sets")
    rng = np.random.default_rng(ties) if ties is not None else None
    out = []
    for row, true in zip(scores, truth):
        if not true:
            raise AssayError("every query needs at least one true example")
        true = sorted(true)
        if rng is None:
            out.append(np.array([int((row >= row[t]).sum()) for t in true]))
            continue
        order = np.lexsort((rng.random(row.size), -row))  # best first, random among equals
        rank = np.empty(row.size, dtype=int)
        rank[order] = np.arange(1, row.size + 1)
        out.append(rank[true])
    return out


def recall_at_k(scores: np.ndarray, truth: Sequence[set[int]], k: int,
                ties: int | None = None) -> np.ndarray:
    """Per query, the fraction of its true examples among the ``k`` highest scores (``ties``:
    see `reciprocal_rank`)."""
    return np.array([(r <= k).mean() for r in _ranks_of_truth(scores, truth, ties)])


def reciprocal_rank(scores: np.ndarray, truth: Sequence[set[int]],
                    ties: int | None = None) -> np.ndarray:
    """Per query, 1 / the rank of its best-ranked true example (MRR is the mean). Tied scores
    rank a true example last among its equals, or, with ``ties`` a seed, in a random place."""
    return np.array([1.0 / r.min() for r in _ranks_of_truth(scores, truth, ties)])


def subset_masks(n_examples: int, n_subsets: int, fraction: float = 0.5,
                 seed: int = 0) -> np.ndarray:
    """(S, N) booleans: ``n_subsets`` random subsets, each keeping round(fraction * N)."""
    if not 0 < fraction < 1:
        raise AssayError(f"fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    keep = max(1, round(fraction * n_examples))
    masks = np.zeros((n_subsets, n_examples), dtype=bool)
    for s in range(n_subsets):
        masks[s, rng.choice(n_examples, keep, replace=False)] = True
    return masks


def lds(scores: np.ndarray, masks: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per query, the linear datamodeling score: the Spearman correlation, over subsets,
    between the loss the scores predict for a model trained on each subset (minus the
    summed support of the examples it keeps) and ``actual`` (S, Q), the query's loss after
    retraining on that subset."""
    masks = np.asarray(masks, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if masks.shape[1] != scores.shape[1] or actual.shape != (masks.shape[0], scores.shape[0]):
        raise AssayError(f"lds needs masks (S, N) and actual (S, Q) for scores (Q, N): got "
                         f"{masks.shape}, {actual.shape}, {scores.shape}")
    if masks.shape[0] < 3:
        raise AssayError("lds needs at least 3 subsets for a rank correlation")
    predicted = -(masks @ scores.T)  # (S, Q): more support kept, lower predicted loss
    out = []
    for q in range(scores.shape[0]):
        rho = spearmanr(predicted[:, q], actual[:, q]).statistic
        out.append(0.0 if np.isnan(rho) else float(rho))
    return np.array(out)
