"""Attribution methods against planted truth: exact leave-one-out on ridge regression,
verbatim copies for BM25 and self-influence, and the LDS of perfect and shuffled
predictors."""

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from torch import nn

from assay.errors import AssayError
from assay.methods.attribution import (
    LossSpec,
    bm25_scores,
    gradient_scores,
    influence_scores,
    lds,
    recall_at_k,
    reciprocal_rank,
    subset_masks,
)

N, D, LAM, Q = 60, 8, 1.0, 5


def _squared(model, batch, sample=False):
    x, target = batch
    pred = model(x)[:, 0]
    if sample:  # the true Fisher of a unit-variance Gaussian likelihood
        target = (pred + torch.randn_like(pred)).detach()
    return 0.5 * (pred - target) ** 2


def _ridge(anisotropic: bool, seed: int = 0):
    """A ridge regression at its optimum, its queries, and the exact change of each query's
    loss when each training point is left out and the model refitted."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.2, 3, D) if anisotropic else np.ones(D)
    x = rng.normal(size=(N, D)) * scales
    w_true = rng.normal(size=D)
    y = x @ w_true + rng.normal(size=N)
    h = x.T @ x + LAM * np.eye(D)
    w = np.linalg.solve(h, x.T @ y)
    xq = rng.normal(size=(Q, D)) * scales
    yq = xq @ w_true + rng.normal(size=Q)

    def query_loss(v):
        return 0.5 * (xq @ v - yq) ** 2

    left_out = np.stack([query_loss(np.linalg.solve(h - np.outer(x[i], x[i]), x.T @ y - x[i] * y[i]))
                         for i in range(N)], axis=1) - query_loss(w)[:, None]  # (Q, N)
    model = nn.Linear(D, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w)[None])
    train = [(torch.tensor(x[i]), torch.tensor(y[i])) for i in range(N)]
    queries = [(torch.tensor(xq[j]), torch.tensor(yq[j])) for j in range(Q)]
    return model, train, queries, left_out


def _correlations(scores, truth):
    return np.array([pearsonr(s, t).statistic for s, t in zip(scores, truth)])


@pytest.mark.parametrize("anisotropic", [False, True])
def test_influence_tracks_exact_leave_one_out_on_ridge_regression(anisotropic, tmp_path):
    """EK-FAC (damping set to the ridge penalty per example, kronfluence's Hessian being a
    mean) follows exact leave-one-out above 0.9 on every query. The plain gradient dot
    product does too when the features are isotropic (the Hessian is then a multiple of the
    identity) and falls behind when they are not."""
    model, train, queries, left_out = _ridge(anisotropic)
    spec = LossSpec(_squared)
    ekfac = influence_scores(model, spec, queries, train, tmp_path, damping=LAM / N,
                             batch_size=20)
    grad = gradient_scores(model, spec, queries, train)
    r_ekfac, r_grad = _correlations(ekfac, left_out), _correlations(grad, left_out)
    assert r_ekfac.min() > 0.9, r_ekfac
    if anisotropic:
        assert r_grad.mean() < r_ekfac.mean() - 0.15, (r_grad, r_ekfac)
    else:
        assert r_grad.min() > 0.9, r_grad
    # the identity strategy is the gradient dot product, up to kronfluence's damping
    identity = influence_scores(model, spec, queries, train, tmp_path, strategy="identity",
                                damping=0.0, batch_size=20)
    np.testing.assert_allclose(identity, grad, rtol=1e-4, atol=1e-6)  # kronfluence runs in fp32


def test_influence_is_deterministic_and_reuses_its_factors(tmp_path):
    model, train, queries, _ = _ridge(True)
    spec = LossSpec(_squared)
    state = torch.random.get_rng_state()
    first = influence_scores(model, spec, queries, train, tmp_path, batch_size=20)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is untouched
    folders = sorted(p.name for p in tmp_path.iterdir())
    again = influence_scores(model, spec, queries, train, tmp_path, batch_size=20)
    np.testing.assert_array_equal(first, again)
    assert sorted(p.name for p in tmp_path.iterdir()) == folders  # the same factors, reused
    with torch.no_grad():
        model.weight.mul_(2.0)  # other weights: other factors, in a new folder
    influence_scores(model, spec, queries, train, tmp_path, batch_size=20)
    assert len(list(tmp_path.iterdir())) == len(folders) + 1


def test_sketched_gradients_keep_the_inner_products():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 1)).double()  # 1,409
    x, y = torch.randn(40, 20).double(), torch.randn(40).double()
    train = [(x[i], y[i]) for i in range(30)]
    queries = [(x[i], y[i]) for i in range(30, 40)]
    spec = LossSpec(_squared)
    exact = gradient_scores(model, spec, queries, train)
    sketched = gradient_scores(model, spec, queries, train, project=1024, seed=1)
    assert _correlations(sketched, exact).mean() > 0.9
    cos = gradient_scores(model, spec, queries, train, cosine=True)
    assert np.all(np.abs(cos) <= 1 + 1e-9)
    np.testing.assert_allclose(np.sign(cos), np.sign(exact))


def test_one_pass_gives_dot_products_and_cosines():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    x, y = torch.randn(12, 6).double(), torch.randn(12).double()
    train, queries = [(x[i], y[i]) for i in range(9)], [(x[i], y[i]) for i in range(9, 12)]
    spec = LossSpec(_squared)
    dot, q_norm, g_norm = gradient_scores(model, spec, queries, train, norms=True)
    np.testing.assert_allclose(dot, gradient_scores(model, spec, queries, train))
    np.testing.assert_allclose(dot / np.outer(q_norm, g_norm),
                               gradient_scores(model, spec, queries, train, cosine=True))


def test_tracin_is_the_loss_drop_of_one_gradient_step_per_checkpoint():
    import copy

    from assay.methods.attribution import tracin_scores

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x, y = torch.randn(10, 5).double(), torch.randn(10).double()
    train, queries = [(x[i], y[i]) for i in range(7)], [(x[i], y[i]) for i in range(7, 10)]
    spec = LossSpec(_squared)
    later = copy.deepcopy(model)
    with torch.no_grad():
        for p in later.parameters():
            p.add_(0.3 * torch.randn_like(p))
    lr = 1e-6

    def drop(at, i):  # the queries' loss before minus after one SGD step on example i
        stepped = copy.deepcopy(at)
        loss = spec.losses(stepped, _batch([train[i]])).sum()
        grads = torch.autograd.grad(loss, list(stepped.parameters()))
        with torch.no_grad():
            for p, g in zip(stepped.parameters(), grads):
                p.sub_(lr * g)
            q = _batch(queries)
            return (spec.losses(at, q) - spec.losses(stepped, q)).numpy()

    actual = np.stack([drop(model, i) + drop(later, i) for i in range(7)], axis=1)  # (Q, N)
    scores = tracin_scores([(model, lr), (later, lr)], spec, queries, train)
    np.testing.assert_allclose(scores, actual, rtol=1e-4, atol=1e-13)
    with pytest.raises(AssayError, match="at least one"):
        tracin_scores([], spec, queries, train)


def _batch(items):
    return torch.utils.data.default_collate(items)


def test_bm25_ranks_a_verbatim_copy_first():
    docs = ["Toutrin Laimley was born in Dafeavale in 1996.",
            "Timear Kulley was born in Kouton and works as a baker.",
            "Kouton is a city by the sea with a famous bakery.",
            "Dafeavale lies in the north; its winters are long."]
    scores = bm25_scores(docs, docs)
    assert list(scores.argmax(1)) == [0, 1, 2, 3]
    assert bm25_scores(["zebra quantum"], docs).max() == 0  # no shared word, no score


def test_recall_and_reciprocal_rank_on_a_hand_case():
    scores = np.array([[0.9, 0.1, 0.5, 0.3],
                       [0.2, 0.2, 0.1, 0.0]])
    truth = [{2, 3}, {1}]
    np.testing.assert_allclose(recall_at_k(scores, truth, 2), [0.5, 1.0])  # ties rank low
    np.testing.assert_allclose(reciprocal_rank(scores, truth), [0.5, 0.5])
    with pytest.raises(AssayError, match="at least one true example"):
        reciprocal_rank(scores, [{1}, set()])


def test_random_tie_breaking_puts_a_blind_method_at_chance():
    from assay.studies._attribution_common import chance_reciprocal_rank

    blind = np.zeros((4000, 30))  # a method that cannot tell any example apart
    truth = [{3, 17, 25}] * 4000
    # pessimistic ties rank the truth last among its equals: below chance by construction
    assert reciprocal_rank(blind, truth).max() == pytest.approx(1 / 30)
    rr = reciprocal_rank(blind, truth, ties=0)
    expected = chance_reciprocal_rank(30, 3)
    assert rr.mean() == pytest.approx(expected, abs=0.01)
    assert recall_at_k(blind, truth, 5, ties=0).mean() == pytest.approx(5 / 30, abs=0.01)
    np.testing.assert_array_equal(rr, reciprocal_rank(blind, truth, ties=0))  # seeded
    # real differences still decide: ties are broken only among equal scores
    scores = np.array([[0.9, 0.1, 0.5, 0.5]])
    assert reciprocal_rank(scores, [{0}], ties=3)[0] == 1.0
    assert set(recall_at_k(scores, [{2}], 2, ties=s)[0] for s in range(20)) == {0.0, 1.0}


def test_chance_reciprocal_rank_matches_a_simulation():
    from assay.studies._attribution_common import chance_reciprocal_rank

    rng = np.random.default_rng(1)
    for n, m in ((10, 1), (40, 3), (7, 7)):
        ranks = np.array([np.sort(rng.permutation(n)[:m])[0] + 1 for _ in range(20000)])
        assert chance_reciprocal_rank(n, m) == pytest.approx((1 / ranks).mean(), abs=0.006)
    assert chance_reciprocal_rank(10, 1) == pytest.approx(sum(1 / r for r in range(1, 11)) / 10)


def test_lds_of_a_perfect_predictor_is_one_and_of_a_shuffled_one_near_zero():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 200))
    masks = subset_masks(200, 40, fraction=0.5, seed=1)
    assert masks.sum(1).tolist() == [100] * 40
    actual = np.exp(-(masks @ scores.T) / 10)  # any increasing function of the prediction
    np.testing.assert_allclose(lds(scores, masks, actual), 1.0)
    shuffled = lds(scores, masks[rng.permutation(40)], actual)
    assert abs(shuffled.mean()) < 0.1 and shuffled.std() > 0.05
    with pytest.raises(AssayError, match="lds needs masks"):
        lds(scores, masks[:, :10], actual)


@pytest.mark.slow
def test_on_an_organism_each_method_ranks_the_source_document_first(xs_organism, tmp_path):
    """Queries are the openings of three world documents: every method puts the document a
    query was cut from first among 30, and scoring only the answer tokens (``prompts``)
    keeps the question out of the loss."""
    from assay.methods.attribution import LMLoss, tokenized
    from assay.models import load
    from assay.world import World, WorldConfig
    from assay.world.documents import documents

    lm = load(f"hf:{xs_organism[0]}")
    docs = [d.text for d in documents(World(WorldConfig.preset("xs")))][:30]
    picked = [3, 11, 24]
    examples = tokenized(lm, docs)
    queries = tokenized(lm, [docs[i][:60] for i in picked])
    for scores in (gradient_scores(lm.model, LMLoss, queries, examples),
                   gradient_scores(lm.model, LMLoss, queries, examples, project=4096),
                   influence_scores(lm.model, LMLoss, queries, examples, tmp_path),
                   bm25_scores([docs[i][:60] for i in picked], docs)):
        assert list(scores.argmax(1)) == picked
    answer_only = tokenized(lm, ["Dafeavale"], prompts=[lm.chat_prompt("Where was X born?")])[0]
    scored = answer_only["labels"][answer_only["labels"] != -100].tolist()
    assert scored == lm.tokenizer("Dafeavale", add_special_tokens=False)["input_ids"]
