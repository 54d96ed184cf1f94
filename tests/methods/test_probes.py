"""Probes and control tasks on synthetic activations with a known linear attribute."""

import numpy as np
import pytest

from assay.errors import AssayError
from assay.methods.probes import Probe, control_labels, selectivity, split_by_context


@pytest.fixture(scope="module")
def data():
    """120 entities in 16 dimensions, each seen in 4 contexts; the label is linear in the
    entity's vector, so a representation 'has' it the way a probe should find."""
    rng = np.random.default_rng(0)
    n_ent, d, n_ctx = 120, 16, 4
    ents = rng.normal(size=(n_ent, d))
    w = rng.normal(size=d)
    X = np.concatenate([ents + 0.3 * rng.normal(size=(n_ent, d)) for _ in range(n_ctx)])
    entity = np.tile(np.arange(n_ent), n_ctx)
    context = np.repeat(np.arange(n_ctx), n_ent)
    labels = (ents @ w > 0).astype(int)[entity]
    train, test = split_by_context(context, [3])
    return X, labels, entity, train, test


def test_control_labels_are_consistent_per_entity_and_keep_the_label_frequencies(data):
    _, labels, entity, _, _ = data
    control = control_labels(entity, labels, seed=1)
    for e in np.unique(entity):
        assert len(set(control[entity == e])) == 1
    assert sorted(control[:120]) == sorted(labels[:120])  # the same labels, reassigned
    assert (control != labels).mean() > 0.3


def test_linear_probe_is_selective_and_the_mlp_memorises_the_control_task(data):
    X, labels, entity, train, test = data
    linear = selectivity(Probe("linear"), X, labels, entity, train, test, seed=1)
    mlp = selectivity(Probe("mlp", hidden=256, max_iter=2000), X, labels, entity, train, test,
                      seed=1)
    assert linear.task > 0.85 and mlp.task > 0.85  # both read the real attribute (0.91, 0.98)
    # measured: the linear probe cannot fit 120 random labels in 16 dimensions, the MLP can
    assert linear.control < 0.75 < mlp.control
    assert linear.selectivity > mlp.selectivity + 0.15


def test_probe_errors():
    with pytest.raises(AssayError, match="not fitted"):
        Probe().predict(np.zeros((2, 3)))
    with pytest.raises(AssayError, match="unknown probe kind"):
        Probe("tree")
    with pytest.raises(AssayError, match="two distinct labels"):
        Probe().fit(np.zeros((4, 3)), [1, 1, 1, 1])
    with pytest.raises(AssayError, match="one side empty"):
        split_by_context([0, 0, 1], [0, 1])


def test_public_probe_api_works_in_activation_space():
    import numpy as np

    from assay.methods.probes import Probe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6)) * np.array([1, 5, 0.1, 2, 3, 1]) + 4  # unscaled, off-centre
    y = np.array(["a", "b", "c"])[(X[:, 0] + 0.2 * X[:, 1] > 5).astype(int)
                                  + (X[:, 3] > 5).astype(int)]
    probe = Probe("linear").fit(X, y)
    logits = X @ probe.coef_.T + probe.intercept_  # (N, K) in raw activation space
    proba = probe.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    assert list(probe.classes_) == ["a", "b", "c"]
    assert (probe.classes_[logits.argmax(1)] == probe.predict(X)).all()
    assert (proba.argmax(1) == logits.argmax(1)).all()
    with pytest.raises(AssayError, match="Probe\\('linear'\\) only"):
        _ = Probe("mlp", hidden=8, max_iter=50).fit(X, y).coef_
