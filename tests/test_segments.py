"""The segment comparison's tables: labels, values from the metrics files, empty selection."""

import json

import pandas as pd
import pytest

from genreflow import segments


def test_length_labels_round_trip():
    assert segments.length_label(None) == "whole" and segments.length_label(3) == "3s"
    assert segments.length_label(2.5) == "2.5s" and segments.length_seconds("2.5s") == 2.5
    assert segments.length_seconds("whole") is None
    with pytest.raises(ValueError, match="neither 'whole' nor like '3s'"):
        segments.length_seconds("3")


def metrics(backbone, feature, tracks_f1, segments_f1, n_tracks, n_segments):
    level = lambda f1, n: {"macro_f1": f1, "accuracy": f1 + 0.01, "n": n}  # noqa: E731
    return {
        "backbone": backbone, "feature": feature, "epochs_run": 5,
        "test": {"tracks": level(tracks_f1, n_tracks), "examples": level(segments_f1, n_segments)},
        "valid": {"tracks": level(tracks_f1 - 0.1, n_tracks), "examples": level(0.1, n_segments)},
    }


def test_summary_table_and_figure_from_metrics_files(tmp_path):
    rows, paths = [], []
    for length, f1, seg_f1, n_seg in (("5s", 0.7, 0.6, 40), ("whole", 0.5, 0.5, 20), ("3s", 0.8, 0.65, 60)):
        path = tmp_path / f"{length}.json"
        path.write_text(json.dumps(metrics("vgg16", "mel", f1, seg_f1, 20, n_seg)))
        rows.append({"length": length, "backbone": "vgg16", "feature": "mel"})
        paths.append(str(path))
    out = {name: str(tmp_path / name) for name in ("s.csv", "t.md", "f.png")}
    segments.summarize_segments(rows, paths, ["a"] * 10, ["SYNTHETIC DEMO CORPUS: x"],
                                out["s.csv"], out["t.md"], out["f.png"], log=lambda m: None)
    table = pd.read_csv(out["s.csv"])
    assert list(table.columns) == segments.SUMMARY_COLUMNS
    three = table[table.length == "3s"].iloc[0]
    assert three.test_macro_f1 == 0.8 and three.test_segment_macro_f1 == 0.65
    assert three.test_segments == 60 and three.seconds == 3.0 and three.chance == 0.1
    markdown = open(out["t.md"]).read()
    # whole clips first, then shortest to longest; segment level in brackets
    assert "| model | whole | 3s | 5s |" in markdown
    assert "| vgg16 + mel | 0.500 | 0.800 (0.650) | 0.700 (0.600) |" in markdown
    assert "**SYNTHETIC DEMO CORPUS: x**" in markdown
    assert open(out["f.png"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_metrics_file_of_another_model_is_refused(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(metrics("resnet50", "mel", 0.5, 0.5, 2, 2)))
    with pytest.raises(ValueError, match="backbone 'resnet50', expected 'vgg16'"):
        segments.comparison_table([{"length": "3s", "backbone": "vgg16", "feature": "mel"}],
                                  [str(path)], ["a", "b"])


def test_no_selected_model_gives_a_placeholder_not_a_crash(tmp_path):
    out = [str(tmp_path / name) for name in ("s.csv", "t.md", "f.png")]
    segments.summarize_segments([], [], ["a", "b"], [], *out, log=lambda m: None)
    assert list(pd.read_csv(out[0]).columns) == segments.SUMMARY_COLUMNS
    assert "screening selected no model" in open(out[1]).read()
    assert open(out[2], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
