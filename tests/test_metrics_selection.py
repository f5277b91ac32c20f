import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix as sk_confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from genreflow.names import GTZAN_GENRES
from genreflow.scoring import classification_metrics, confusion_matrix
from genreflow.screening import best_feature_per_backbone, select_combinations

N_CLASSES = len(GTZAN_GENRES)
ALL = list(range(N_CLASSES))


def _assert_matches_sklearn(y_true, y_pred):
    ours = classification_metrics(y_true, y_pred, GTZAN_GENRES)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert ours["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", labels=ALL, zero_division=0)
    )
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ALL, zero_division=0
    )
    for i, genre in enumerate(GTZAN_GENRES):
        scores = ours["per_class"][genre]
        assert scores["precision"] == pytest.approx(precision[i])
        assert scores["recall"] == pytest.approx(recall[i])
        assert scores["f1"] == pytest.approx(f1[i])
        assert scores["support"] == support[i]
    assert ours["n"] == len(y_true)
    np.testing.assert_array_equal(
        ours["confusion_matrix"], sk_confusion_matrix(y_true, y_pred, labels=ALL)
    )


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, N_CLASSES, 200)
    y_pred = rng.integers(0, N_CLASSES, 200)
    _assert_matches_sklearn(y_true, y_pred)


def test_metrics_match_sklearn_with_never_predicted_classes():
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, N_CLASSES, 150)
    # Only 3 classes are ever predicted: precision is undefined for the other 7.
    y_pred = rng.choice([0, 4, 9], 150)
    _assert_matches_sklearn(y_true, y_pred)
    scores = classification_metrics(y_true, y_pred, GTZAN_GENRES)["per_class"]
    assert scores["classical"]["precision"] == 0.0


def test_metrics_match_sklearn_with_absent_true_class():
    y_true = np.array([0, 0, 1, 1, 2, 2, 3])
    y_pred = np.array([0, 5, 1, 2, 2, 2, 5])
    _assert_matches_sklearn(y_true, y_pred)


def test_perfect_predictions():
    y = np.arange(N_CLASSES).repeat(3)
    metrics = classification_metrics(y, y, GTZAN_GENRES)
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix([0, 0, 1], [1, 1, 1], 3)
    np.testing.assert_array_equal(matrix, [[0, 2, 0], [0, 1, 0], [0, 0, 0]])


def test_custom_labels_and_bad_input():
    metrics = classification_metrics([0, 1, 1], [0, 1, 0], labels=("a", "b"))
    assert set(metrics["per_class"]) == {"a", "b"}
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="labels but"):
        confusion_matrix([0, 1], [0], 3)


# --------------------------------------------------------------------------- selection


def _summary(rows):
    return pd.DataFrame(
        rows, columns=["backbone", "feature", "valid_macro_f1", "test_macro_f1"]
    )


@pytest.fixture
def study_summary():
    """Shaped like the study's screening: VGG16+mel and InceptionV3+spectrogram win."""
    return _summary(
        [
            ("vgg16", "mel", 0.71, 0.69),
            ("vgg16", "spectrogram", 0.66, 0.70),
            ("vgg16", "mfcc", 0.52, 0.50),
            ("inceptionv3", "mel", 0.63, 0.74),
            ("inceptionv3", "spectrogram", 0.68, 0.65),
            ("inceptionv3", "mfcc", 0.49, 0.47),
            ("resnet50", "mel", 0.41, 0.80),
            ("resnet50", "spectrogram", 0.44, 0.42),
            ("efficientnetb0", "mel", 0.38, 0.36),
            ("efficientnetb0", "spectrogram", 0.35, 0.37),
        ]
    )


STUDY_OUTCOME = [
    {"backbone": "vgg16", "feature": "mel", "valid_macro_f1": 0.71},
    {"backbone": "inceptionv3", "feature": "spectrogram", "valid_macro_f1": 0.68},
]


def test_study_outcome_by_threshold(study_summary):
    assert select_combinations(study_summary, min_f1=0.6) == STUDY_OUTCOME


def test_study_outcome_by_top_k(study_summary):
    assert select_combinations(study_summary, top_k=2) == STUDY_OUTCOME


def test_selection_ignores_test_scores(study_summary):
    # resnet50+mel has the best test F1 of all; it must not matter.
    chosen = select_combinations(study_summary, top_k=3)
    assert chosen[2] == {
        "backbone": "resnet50",
        "feature": "spectrogram",
        "valid_macro_f1": 0.44,
    }
    with pytest.raises(ValueError, match="leak"):
        select_combinations(study_summary, metric="test_macro_f1")


def test_no_filter_keeps_every_backbone_best(study_summary):
    chosen = select_combinations(study_summary)
    assert [c["backbone"] for c in chosen] == [
        "vgg16",
        "inceptionv3",
        "resnet50",
        "efficientnetb0",
    ]
    assert select_combinations(study_summary, min_f1=0.9) == []


def test_threshold_and_top_k_combine(study_summary):
    assert select_combinations(study_summary, min_f1=0.4, top_k=1) == STUDY_OUTCOME[:1]
    assert len(select_combinations(study_summary, min_f1=0.4, top_k=10)) == 3


def test_deterministic_tie_breaks():
    summary = _summary(
        [
            ("vgg16", "spectrogram", 0.7, 0.1),
            ("vgg16", "mel", 0.7, 0.2),
            ("resnet50", "mel", 0.7, 0.3),
            ("inceptionv3", "mel", np.nan, 0.9),
            ("inceptionv3", "mfcc", 0.2, 0.9),
        ]
    )
    expected = [
        {"backbone": "resnet50", "feature": "mel", "valid_macro_f1": 0.7},
        {"backbone": "vgg16", "feature": "mel", "valid_macro_f1": 0.7},
        {"backbone": "inceptionv3", "feature": "mfcc", "valid_macro_f1": 0.2},
    ]
    assert select_combinations(summary) == expected
    assert select_combinations(summary.iloc[::-1]) == expected


def test_other_validation_metric():
    summary = _summary([("vgg16", "mel", 0.5, 0.1), ("vgg16", "mfcc", 0.4, 0.2)])
    summary["valid_accuracy"] = [0.6, 0.8]
    chosen = select_combinations(summary, metric="valid_accuracy")
    assert chosen == [
        {
            "backbone": "vgg16",
            "feature": "mfcc",
            "valid_macro_f1": 0.4,
            "valid_accuracy": 0.8,
        }
    ]
    assert best_feature_per_backbone(summary)["feature"].tolist() == ["mel"]


def test_bad_summaries():
    with pytest.raises(ValueError, match="lacks"):
        select_combinations(pd.DataFrame({"backbone": ["vgg16"], "feature": ["mel"]}))
    duplicated = _summary([("vgg16", "mel", 0.5, 0.1), ("vgg16", "mel", 0.4, 0.2)])
    with pytest.raises(ValueError, match="repeated"):
        select_combinations(duplicated)
    with pytest.raises(ValueError, match="top_k"):
        select_combinations(duplicated.iloc[:1], top_k=0)
