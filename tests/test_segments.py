"""The segment comparison's tables: labels, values from the metrics files, empty selection."""

import json

import pandas as pd
import pytest

from genreflow import segments
from genreflow.names import length_label, length_order, length_seconds


def test_length_labels_round_trip():
    assert length_label(None) == "whole" and length_label(3) == "3s"
    assert length_label(2.5) == "2.5s" and length_seconds("2.5s") == 2.5
    assert length_seconds("whole") is None
    with pytest.raises(ValueError, match="neither 'whole' nor like '3s'"):
        length_seconds("3")
    assert length_order(["10s", "3s", "whole", "3s", "2.5s"]) == ["whole", "2.5s", "3s", "10s"]


GENRES = ["x", "y"]
BOOTSTRAP = {"resamples": 1000, "confidence": 0.95, "seed": 0}


def write_run(folder, length, backbone, feature, wrong_per_class, segments_f1, n_segments):
    """A screening run's metrics.json and predictions.csv: 40 test tracks (20 per genre,
    enough for an interval), the first `wrong_per_class` of each genre predicted wrong."""
    from genreflow.scoring import classification_metrics

    truth = [0] * 20 + [1] * 20
    predicted = list(truth)
    for start in (0, 20):
        for i in range(start, start + wrong_per_class):
            predicted[i] = 1 - predicted[i]
    frame = pd.DataFrame({"split": "test", "clip": [f"t{i:02d}" for i in range(40)], "segment": 0,
                          "true": [GENRES[i] for i in truth],
                          "predicted": [GENRES[i] for i in predicted]})
    for k, genre in enumerate(GENRES):
        frame[f"p_{genre}"] = [float(p == k) for p in predicted]
    predictions = folder / f"{length}.{backbone}.csv"
    frame.to_csv(predictions, index=False)
    tracks = classification_metrics(truth, predicted, GENRES)
    level = lambda f1, n: {"macro_f1": f1, "accuracy": f1 + 0.01, "n": n}  # noqa: E731
    record = {
        "backbone": backbone, "feature": feature, "epochs_run": 5,
        "test": {"tracks": tracks, "examples": level(segments_f1, n_segments)},
        "valid": {"tracks": level(0.5, 20), "examples": level(0.1, n_segments)},
    }
    path = folder / f"{length}.{backbone}.json"
    path.write_text(json.dumps(record))
    return {"length": length, "backbone": backbone, "feature": feature}, str(path), str(predictions)


def test_summary_table_and_figure_from_metrics_files(tmp_path):
    rows, paths, predictions = [], [], []
    for length, wrong, seg_f1, n_seg in (("5s", 6, 0.6, 80), ("whole", 10, 0.5, 40), ("3s", 2, 0.65, 120)):
        row, path, csv = write_run(tmp_path, length, "vgg16", "mel", wrong, seg_f1, n_seg)
        rows.append(row), paths.append(path), predictions.append(csv)
    out = {name: str(tmp_path / name) for name in ("s.csv", "t.md", "t.html", "f.png")}
    segments.summarize_segments(rows, paths, predictions, GENRES, BOOTSTRAP,
                                ["SYNTHETIC DEMO CORPUS: x"], out["s.csv"], out["t.md"],
                                out["t.html"], out["f.png"], log=lambda m: None)
    table = pd.read_csv(out["s.csv"])
    assert list(table.columns) == segments.SUMMARY_COLUMNS
    three = table[table.length == "3s"].iloc[0]
    assert three.test_macro_f1 == pytest.approx(0.9) and three.test_segment_macro_f1 == 0.65
    assert three.test_segments == 120 and three.seconds == 3.0 and three.chance == 0.5
    assert three.test_macro_f1_low < 0.9 < three.test_macro_f1_high
    # 3 s segments against whole clips (0.5), paired on the same 40 tracks
    assert three.delta_vs_whole == pytest.approx(0.4)
    assert 0 < three.delta_vs_whole_low < 0.4 < three.delta_vs_whole_high
    assert pd.isna(table[table.length == "whole"].iloc[0].delta_vs_whole)
    markdown = open(out["t.md"]).read()
    # whole clips first, then shortest to longest; interval, paired difference, segment level
    assert "| model | whole | 3s | 5s |" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| vgg16 + mel |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1].startswith("0.500 [") and cells[2].startswith("0.900 [")
    assert "<br>Δ +0.400 [" in cells[2] and cells[2].endswith("<br>segment 0.650")
    assert "**SYNTHETIC DEMO CORPUS: x**" in markdown
    page = open(out["t.html"]).read()
    assert "<th>model</th><th>whole</th><th>3s</th><th>5s</th>" in page
    assert "<br>Δ +0.400 [" in page and "<blockquote><b>SYNTHETIC DEMO CORPUS: x</b>" in page
    assert open(out["f.png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_metrics_file_of_another_model_is_refused(tmp_path):
    _, path, csv = write_run(tmp_path, "3s", "resnet50", "mel", 1, 0.5, 2)
    with pytest.raises(ValueError, match="backbone 'resnet50', expected 'vgg16'"):
        segments.comparison_table([{"length": "3s", "backbone": "vgg16", "feature": "mel"}],
                                  [path], [csv], GENRES, None)


def test_no_selected_model_gives_a_placeholder_not_a_crash(tmp_path):
    out = [str(tmp_path / name) for name in ("s.csv", "t.md", "t.html", "f.png")]
    segments.summarize_segments([], [], [], GENRES, BOOTSTRAP, [], *out, log=lambda m: None)
    assert list(pd.read_csv(out[0]).columns) == segments.SUMMARY_COLUMNS
    assert "screening selected no model" in open(out[1]).read()
    assert "screening selected no model" in open(out[2]).read()
    assert open(out[3], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
