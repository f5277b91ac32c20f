"""Do the predictions know when they are unsure? On a finished run (the demo), for every
final model: its temperature (fitted on validation) and the expected calibration error on
the test split before and after, side by side; then the exported bundle (the seed chosen on
validation, its temperature and "unfamiliar" score, made by the workflow's own job
functions) on five sets of files, with the share flagged unfamiliar and the accuracy of
flagged and unflagged files:

- test: the run's test songs (in distribution; the flag should fire on about `rate`);
- held-out: fresh songs of the synthetic corpus's kind, indices the corpus does not have;
- shifted: the test and held-out songs through a strong EQ and a room (tests/odd_audio.py's
  `shifted`), or `--shifted DIR`: a folder of the same songs rendered otherwise (the
  second rendering of issue 23, `<genre>/<anything>` or `<genre>.<index>.wav` names);
- odd: white and pink noise, speech (espeak-ng), clips that are mostly silence, sine tones;

and, to show why the score reads the model's representation, how the calibrated maximum
probability (1 - max p, thresholded the same way) flags the same files.
`--representation softmax_input` fits and scores the input of the softmax layer (the head's
last hidden layer) instead of the head's input, genreflow's choice: the measurement that
decided it (the baseline CNN's are the same layer).

Usage: python benchmarks/confidence.py --run DEMO_RUN [--config DEMO_RUN/config.yaml]
       [--models all | chosen | vgg16/stft/round_2 ...] [--per-genre 4] [--shifted DIR]
       [--representation head_input | softmax_input] [--out /tmp/genreflow-confidence]
Writes nothing into the run: its bundles and files go to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(REPO / "tests"))  # odd_audio: the tests' odd audio
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

SETS = ("test", "held-out", "shifted", "odd")


def quiet(message: str) -> None:
    pass


def probe_files(run: Path, config: dict, out: Path, per_genre: int, shifted_dir: Path | None) -> dict:
    """path -> (set, kind, true genre or None) of every file the bundles classify."""
    import odd_audio
    from genreflow.synthetic import render_clip

    genres = config["dataset"]["genres"]
    seconds = float(config["audio"]["seconds"])
    clips = pd.read_csv(run / "results/corpus/clips.csv").set_index("clip")
    files = {}
    songs = []
    for clip in pd.read_csv(run / "results/splits/test.csv")["clip"]:
        path = run / clips.loc[clip, "path"]
        files[str(path)] = ("test", "test song", clips.loc[clip, "genre"])
        songs.append((str(path), clips.loc[clip, "genre"]))
    folder = out / "probes"
    (folder / "held").mkdir(parents=True, exist_ok=True)
    first = int(config["dataset"]["synthetic"]["clips_per_genre"])
    for genre in genres:
        for index in range(first + 100, first + 100 + per_genre):
            path = folder / "held" / f"{genre}.{index:05d}.wav"
            if not path.exists():
                odd_audio.write(path, render_clip(genre, index, seconds))
            files[str(path)] = ("held-out", "held-out song", genre)
            songs.append((str(path), genre))
    if shifted_dir is None:
        import soundfile

        (folder / "shifted").mkdir(exist_ok=True)
        for i, (source, genre) in enumerate(songs):
            path = folder / "shifted" / f"{i:03d}_{Path(source).name}"
            if not path.exists():
                y, _ = soundfile.read(source, dtype="float64")
                odd_audio.write(path, odd_audio.shifted(y, i))
            files[str(path)] = ("shifted", "EQ + room", genre)
    else:
        for path in sorted(Path(shifted_dir).rglob("*.wav")):
            genre = path.parent.name if path.parent.name in genres else path.name.split(".")[0]
            files[str(path)] = ("shifted", "second rendering", genre)
    music = [render_clip(genre, first + 200, seconds) for genre in genres]
    for path, kind in odd_audio.odd_clips(folder / "odd", seconds, music, count=per_genre,
                                          with_speech=odd_audio.espeak() is not None).items():
        files[path] = ("odd", kind, None)
    return files


def export(run: Path, config: dict, model_id: str, out: Path) -> Path:
    """The model's calibration, unfamiliar score and bundle, by the workflow's job functions."""
    from genreflow import plan
    from genreflow.config import sorted_block
    from genreflow.evaluation.calibration import calibrate_final
    from genreflow.evaluation.unfamiliar import fit_unfamiliarity
    from genreflow.predict.bundle import bundle_settings
    from genreflow.predict.export import export_bundle
    from genreflow.run_info import caveats, final_about, run_about

    backbone, feature, round_name = model_id.split("/")
    n = int(round_name.removeprefix("round_"))
    final = run / plan.final_folder(backbone, feature, n)
    seeds = config["evaluation"]["seeds"]
    work = out / "final" / model_id
    work.mkdir(parents=True, exist_ok=True)
    about = final_about(run_about(config), backbone, feature, n)
    calibrate_final(str(final / "predictions.csv"), config["dataset"]["genres"],
                    config["evaluation"]["calibration_bins"], about, [],
                    str(work / "calibration.json"), str(work / "reliability.png"), log=quiet)
    inputs = {key: str(run / value) for key, value in plan.model_inputs(backbone, feature).items()}
    fit_unfamiliarity(
        [str(path) for path in plan.seed_files(str(final), seeds, "metrics.json")],
        [str(path) for path in plan.seed_files(str(final), seeds, "model.keras")],
        [str(path) for path in plan.seed_files(str(final), seeds, "predictions.csv")],
        {split: str(run / path) for split, path in plan.split_manifests().items()},
        inputs.get("index"), inputs.get("embeddings"), config["dataset"]["genres"],
        config["predict"]["unfamiliar_rate"], str(work / "unfamiliarity.npz"),
        str(work / "unfamiliarity.csv"), str(work / "unfamiliarity.json"), log=quiet)
    audio = sorted_block({k: v for k, v in config["audio"].items() if k != "on_bad_file"})
    settings = bundle_settings(backbone, feature, n, config["dataset"]["genres"], audio,
                               config["segments"]["seconds"] or config["audio"]["seconds"],
                               config["features"].get(feature), config["features"]["image_size"],
                               config["backbones"]["musicnn"], about, caveats(about))
    bundle = out / "export" / model_id
    export_bundle([str(p) for p in plan.seed_files(str(final), seeds, "metrics.json")],
                  [str(p) for p in plan.seed_files(str(final), seeds, "model.keras")],
                  str(work / "calibration.json"), str(work / "unfamiliarity.npz"),
                  str(work / "unfamiliarity.json"), settings, str(bundle / "model.keras"),
                  str(bundle / "unfamiliarity.npz"), str(bundle / "preprocessing.json"),
                  str(bundle / "README.md"), log=quiet)
    return bundle


def flag_table(predictions: pd.DataFrame, column: str) -> dict:
    """Per set: files, share flagged; accuracy of flagged and unflagged songs."""
    rows = {}
    for name in SETS:
        part = predictions[predictions["set"] == name]
        flagged = part[column].to_numpy(dtype=bool)
        right = (part["genre"] == part["truth"]).to_numpy()
        rows[name] = {"n": len(part), "flagged": float(flagged.mean()) if len(part) else np.nan,
                      "acc_flagged": float(right[flagged].mean()) if flagged.any() else np.nan,
                      "acc_unflagged": float(right[~flagged].mean()) if (~flagged).any() else np.nan}
    songs = predictions[predictions["set"] != "odd"]
    flagged = songs[column].to_numpy(dtype=bool)
    right = (songs["genre"] == songs["truth"]).to_numpy()
    rows["songs"] = {"n": len(songs), "flagged": float(flagged.mean()),
                     "acc_flagged": float(right[flagged].mean()) if flagged.any() else np.nan,
                     "acc_unflagged": float(right[~flagged].mean()) if (~flagged).any() else np.nan}
    return rows


def max_probability_flags(bundle_dir: Path, run: Path, model_id: str, predictions: pd.DataFrame) -> pd.Series:
    """1 - (calibrated) max probability, thresholded at the same validation quantile."""
    from genreflow import plan
    from genreflow.evaluation.calibration import split_tracks, temperature_scaled
    from genreflow.io import read_json

    pre = read_json(bundle_dir / "preprocessing.json")
    backbone, feature, round_name = model_id.split("/")
    final = run / plan.final_folder(backbone, feature, int(round_name.removeprefix("round_")))
    table = pd.read_csv(final / "predictions.csv", dtype={"clip": str})
    valid, _ = split_tracks(table, pre["genres"], pre["model"]["seed"], "valid")
    valid_score = 1 - temperature_scaled(valid, pre["calibration"]["temperature"]).max(axis=1)
    threshold = np.quantile(valid_score, 1 - pre["unfamiliarity"]["rate"])
    return (1 - predictions["probability"]) > threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run's folder")
    parser.add_argument("--config", type=Path, help="its config (default RUN/config.yaml)")
    parser.add_argument("--models", nargs="+", default=["all"])
    parser.add_argument("--per-genre", type=int, default=4)
    parser.add_argument("--shifted", type=Path)
    parser.add_argument("--representation", choices=("head_input", "softmax_input"),
                        default="head_input")
    parser.add_argument("--out", type=Path, default=Path("/tmp/genreflow-confidence"))
    args = parser.parse_args()
    if args.representation == "softmax_input":
        from genreflow.models import unfamiliar

        # every fit and score of this process reads the softmax layer's input instead
        unfamiliar.representation_tensor = unfamiliar.softmax_input_tensor
        unfamiliar.representation_name = lambda model: "the input of the softmax layer"

    from genreflow.config import validate_config
    from genreflow.predict import load_bundle

    run = args.run.resolve()
    config = validate_config(yaml.safe_load((args.config or run / "config.yaml").read_text()))
    args.out = args.out.resolve()
    os.chdir(run)  # the feature indexes name images relative to the run; nothing is written here
    summary = pd.read_csv(run / "results/final/summary.csv")
    ids = [f"{b}/{f}/round_{n}" for b, f, n in zip(summary["backbone"], summary["feature"], summary["round"])]
    models = ids if args.models == ["all"] else ids[:1] if args.models == ["chosen"] else args.models
    started = time.perf_counter()
    files = probe_files(run, config, args.out, args.per_genre, args.shifted)
    counts = pd.Series([v[0] for v in files.values()]).value_counts().to_dict()
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"run {run}; representation {args.representation}; files per set {counts}; kinds of odd audio: "
          f"{sorted({v[1] for v in files.values() if v[0] == 'odd'})}")
    lines = []
    for model_id in models:
        bundle_dir = export(run, config, model_id, args.out)
        bundle = load_bundle(bundle_dir)
        predictions, rejected = bundle.predict_files(list(files), log=quiet)
        if len(rejected):
            print(f"{model_id}: rejected {dict(zip(rejected['file'], rejected['reason']))}")
        predictions["set"] = predictions["file"].map(lambda f: files[f][0])
        predictions["kind"] = predictions["file"].map(lambda f: files[f][1])
        predictions["truth"] = predictions["file"].map(lambda f: files[f][2])
        predictions["max_p_flag"] = max_probability_flags(bundle_dir, run, model_id, predictions)
        calibration = bundle.preprocessing["calibration"]
        seed = bundle.preprocessing["model"]["seed"]
        scored = next(r["test"] for r in json.loads(
            (args.out / "final" / model_id / "calibration.json").read_text())["per_seed"]
            if r["seed"] == seed)
        table = flag_table(predictions, "unfamiliar")
        baseline = flag_table(predictions, "max_p_flag")
        kinds = predictions[predictions["set"] == "odd"].groupby("kind")["unfamiliar"].mean()
        lines.append({
            "model": model_id, "T": calibration["temperature"],
            "ece_before": calibration["test_ece_before"], "ece_after": calibration["test_ece_after"],
            "nll_before": scored["nll_before"], "nll_after": scored["nll_after"],
            "brier_before": scored["brier_before"], "brier_after": scored["brier_after"],
            **{f"flag_{name}": table[name]["flagged"] for name in SETS},
            **{f"maxp_{name}": baseline[name]["flagged"] for name in SETS},
            "acc_flagged": table["songs"]["acc_flagged"], "acc_unflagged": table["songs"]["acc_unflagged"],
            "n_songs_flagged": int(round(table["songs"]["flagged"] * table["songs"]["n"])),
            **{f"odd_{kind}": rate for kind, rate in kinds.items()},
        })
        print(json.dumps(lines[-1]), flush=True)
    frame = pd.DataFrame(lines)
    pd.set_option("display.width", 250)
    print("\nper model (flag = share flagged unfamiliar; maxp = flagged by 1 - calibrated max p "
          "at the same validation quantile; acc = accuracy of flagged / unflagged songs, test +"
          " held-out + shifted pooled):")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    medians = frame.drop(columns=["model"]).median(numeric_only=True)
    print("\nmedian over models:")
    print(medians.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nECE after / before (median of per-model ratios): "
          f"{(frame['ece_after'] / frame['ece_before']).median():.2f} (NLL "
          f"{(frame['nll_after'] / frame['nll_before']).median():.2f}, Brier "
          f"{(frame['brier_after'] / frame['brier_before']).median():.2f}); models whose test ECE "
          f"fell: {int((frame['ece_after'] < frame['ece_before']).sum())} of {len(frame)}; "
          "flagged share shifted / "
          f"held-out: {medians['flag_shifted']:.2f} / {medians['flag_held-out']:.2f}; odd / "
          f"held-out: {medians['flag_odd']:.2f} / {medians['flag_held-out']:.2f}; "
          f"{time.perf_counter() - started:.0f} s")
    frame.to_csv(args.out / "confidence.csv", index=False)


if __name__ == "__main__":
    main()
