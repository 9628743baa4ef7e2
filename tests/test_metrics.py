"""Classification metrics, threshold selection and the zero-shot report."""

import json
import math

import numpy as np
import pytest
import torch

from bundle.metrics import (
    classification_metrics,
    linear_probe_aucs,
    linear_probe_report,
    max_f1_thresholds,
    zero_shot_report,
)


def test_perfect_and_random_scores():
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 3)) < 0.3).astype(float)
    perfect = classification_metrics(labels * 0.8 + 0.1, labels, np.full(3, 0.5), ["a", "b", "c"])
    assert perfect["macro"]["auc"] == pytest.approx(1.0)
    assert perfect["macro"]["f1"] == pytest.approx(1.0)
    noise = classification_metrics(rng.random((400, 3)), labels, np.full(3, 0.5), ["a", "b", "c"])
    assert 0.4 < noise["macro"]["auc"] < 0.6
    assert noise["a"]["positives"] == int(labels[:, 0].sum())


def test_max_f1_threshold_separates_classes():
    labels = np.array([[0], [0], [0], [1], [1]], dtype=float)
    scores = np.array([[0.1], [0.2], [0.3], [0.6], [0.9]])
    threshold = max_f1_thresholds(scores, labels)[0]
    assert 0.3 < threshold <= 0.6
    assert max_f1_thresholds(scores, np.zeros_like(labels))[0] == 0.5
    # a held-out column without validation positives borrows the mean of the others' thresholds
    two = max_f1_thresholds(np.hstack([scores, scores]), np.hstack([labels, np.zeros_like(labels)]))
    assert two[1] == two[0] == threshold


def test_single_class_column_gives_nan_auc_and_is_left_out_of_macro():
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=float)
    scores = np.array([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3], [0.2, 0.4]])
    result = classification_metrics(scores, labels, np.full(2, 0.5), ["a", "b"])
    assert np.isnan(result["b"]["auc"])
    assert result["macro"]["auc"] == pytest.approx(1.0)


def test_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        classification_metrics(np.zeros((3, 2)), np.zeros((3, 3)), np.zeros(2), ["a", "b"])


def test_report_uses_validation_thresholds(tmp_path):
    # Validation says 0.7 separates; on test the same threshold is applied, not re-tuned.
    def outputs(scores, labels):
        return [([s for s in scores], [y for y in labels])]

    val = outputs(np.array([[0.6], [0.65], [0.75], [0.8]]), np.array([[0.0], [0.0], [1.0], [1.0]]))
    test = outputs(np.array([[0.2], [0.5], [0.68], [0.9]]), np.array([[0.0], [1.0], [1.0], [1.0]]))
    report = zero_shot_report(val, test, ["effusion"], [], tmp_path)
    seen = report["seen"]["effusion"]
    assert 0.65 < seen["threshold"] <= 0.75
    assert seen["sensitivity"] == pytest.approx(1 / 3)  # only 0.9 passes the validation threshold
    saved = json.loads((tmp_path / "zero_shot_metrics.json").read_text())
    assert saved["thresholds_from"] == "validation"
    assert (tmp_path / "zero_shot_roc.png").stat().st_size > 1000


def test_validation_auc_skips_categories_without_positives():
    import torch

    from bundle.metrics import ScorableMacroROCAUCMetric

    metric = ScorableMacroROCAUCMetric()
    labels = torch.tensor([[1, 0], [0, 0], [1, 0], [0, 0]], dtype=torch.float32)
    metric(torch.tensor([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3], [0.3, 0.4]]), labels)
    assert metric.aggregate() == pytest.approx(1.0)
    metric.reset()
    metric(torch.rand(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="AUC is undefined"):
        metric.aggregate()


def test_stored_outputs_attached_to_a_graph_or_on_a_device_stack_to_plain_arrays():
    import torch
    from monai.data import MetaTensor

    from bundle.engines.zero_shot import stack_outputs

    weight = torch.ones(2, requires_grad=True)
    batch_scores = [MetaTensor(torch.tensor([0.2, 0.9]) * weight), MetaTensor(torch.tensor([0.7, 0.1]) * weight)]
    outputs = [(batch_scores, [torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])])]
    scores, labels = stack_outputs(outputs)
    assert type(scores) is np.ndarray and scores.shape == (2, 2)
    np.testing.assert_allclose(scores, [[0.2, 0.9], [0.7, 0.1]], rtol=1e-6)
    np.testing.assert_array_equal(labels, [[0, 1], [1, 0]])


def test_abnormal_study_auc_sees_through_a_score_that_only_tells_abnormal_from_normal(tmp_path):
    # Studies 0-1 are normal, 2-3 have "a", 4-5 have "b". The score of "b" is high for every abnormal
    # study and does not rank b above a: over all studies its AUC is 0.75, over the abnormal ones 0.5.
    labels = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)
    scores = np.array([[0.1, 0.1], [0.2, 0.2], [0.9, 0.8], [0.8, 0.9], [0.3, 0.8], [0.4, 0.9]])
    outputs = [(list(scores), list(labels))]
    report = zero_shot_report(outputs, outputs, ["a", "b"], ["b"], tmp_path, bootstrap_resamples=20)
    assert report["n_test_abnormal"] == 4
    assert report["unseen"]["b"]["auc"] == pytest.approx(0.75)
    assert report["unseen"]["b"]["auc_abnormal_studies"] == pytest.approx(0.5)
    assert report["seen"]["a"]["auc_abnormal_studies"] == pytest.approx(1.0)
    assert report["unseen"]["macro"]["auc_abnormal_studies"] == pytest.approx(0.5)
    assert "auc, abnormal studies" in report["table"]
    saved = json.loads((tmp_path / "zero_shot_metrics.json").read_text())
    assert saved["unseen"]["b"]["auc_abnormal_studies"] == pytest.approx(0.5)


def test_linear_probe_separates_a_linear_category_and_not_a_random_one():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 8))
    separable = features[:, 0] + 0.5 * features[:, 1] > 0.3  # a linear read-out of the features
    unrelated = rng.random(200) < 0.4  # independent of them
    too_rare = np.zeros(200, dtype=bool)
    too_rare[:3] = True  # three positives cannot fill five folds
    labels = np.stack([separable, unrelated, too_rare], axis=1).astype(float)
    aucs = linear_probe_aucs(features, labels, folds=5, seed=0)
    assert aucs[0] > 0.97
    assert 0.35 < aucs[1] < 0.65
    assert np.isnan(aucs[2])
    np.testing.assert_array_equal(aucs, linear_probe_aucs(features, labels, folds=5, seed=0))  # seeded folds


def test_linear_probe_report_reads_the_retrieval_outputs_and_checks_shapes():
    rng = np.random.default_rng(1)
    features = torch.as_tensor(rng.normal(size=(60, 4)), dtype=torch.float32)
    labels = torch.stack([features[:, 0] > 0, features[:, 1] > 0], dim=1).float()
    outputs = [({"image_features": features[i:i + 20]}, labels[i:i + 20]) for i in range(0, 60, 20)]
    report = linear_probe_report(outputs, ["a", "b"], folds=3)
    assert set(report) == {"a", "b"} and min(report.values()) > 0.9
    with pytest.raises(ValueError, match="2 columns for 3 categories"):
        linear_probe_report(outputs, ["a", "b", "c"])
    with pytest.raises(ValueError, match="features \\[N, D\\] and labels \\[N, C\\]"):
        linear_probe_aucs(features.numpy(), labels.numpy()[:10])


def test_zero_shot_report_tabulates_the_linear_probe_beside_the_zero_shot_auc(tmp_path):
    labels = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0, 1], [1, 0]], dtype=float)
    scores = labels * 0.6 + 0.2
    outputs = [(list(scores), list(labels))]
    report = zero_shot_report(outputs, outputs, ["a", "b"], ["b"], tmp_path, bootstrap_resamples=20,
                              linear_probe={"a": 0.9, "b": math.nan})
    assert report["seen"]["a"]["auc_linear_probe"] == pytest.approx(0.9)
    assert report["seen"]["macro"]["auc_linear_probe"] == pytest.approx(0.9)
    # a category the probe could not score (too few positives for its folds) has no entry, nor has its group's macro
    assert "auc_linear_probe" not in report["unseen"]["b"] and "auc_linear_probe" not in report["unseen"]["macro"]
    assert "| auc, abnormal studies | auc, linear probe |" in report["table"]
    saved = json.loads((tmp_path / "zero_shot_metrics.json").read_text())
    assert saved["seen"]["a"]["auc_linear_probe"] == pytest.approx(0.9)
