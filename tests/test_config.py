"""A bad config fails before any job runs, with a message that names the key."""

import copy

import pytest
import yaml

from genreflow.config import ConfigError, validate_config

with open("config.yaml") as handle:
    DEMO = yaml.safe_load(handle)


def with_change(path, value):
    config = copy.deepcopy(DEMO)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


def test_demo_config_is_valid_and_defaults_are_filled():
    config = validate_config({})
    assert config["features"]["mel"]["n_mels"] == 128
    assert config["audio"]["sample_rate"] == 22050
    assert validate_config(DEMO)["dataset"]["kind"] == "synthetic"


def test_config_yaml_matches_schema_defaults_where_it_does_not_mean_to_differ():
    # config.yaml is documentation too: it must not drift from the schema it is read with
    assert validate_config(DEMO)["features"] == {
        **validate_config({})["features"],
        "image_size": DEMO["features"]["image_size"],
    }


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("features.melody", {"n_fft": 512}, r"features: Additional properties are not allowed \('melody'"),
        ("features.mel.n_mels", -1, r"features\.mel\.n_mels: -1 is less than the minimum of 1"),
        ("features.mel.fmin", "1e-3", r"features\.mel\.fmin: '1e-3' is not of type 'number' \(YAML reads 1e-3 as text"),
        ("dataset.kind", "gtzan", r"dataset\.root: required when dataset\.kind is gtzan"),
        ("dataset.root", "/no/such/folder", None),
        ("splits.fractions", {"train": 0.8, "valid": 0.15, "test": 0.15}, r"splits\.fractions: .* adds up to 1\.1"),
        ("audio.on_bad_file", "ignore", r"audio\.on_bad_file: 'ignore' is not one of"),
        ("features.mfcc.n_mfcc", 200, r"features\.mfcc\.n_mfcc: 200 exceeds features\.mfcc\.n_mels"),
        ("segments.compare", [None, 3, 20], r"segments\.compare\.2: 20 exceeds audio\.seconds"),
        ("segments.compare", [None, 0.05], r"features\.mel\.n_fft: 2048 samples is longer than a clip or segment \(0\.05 s\)"),
        ("backbones.musicnn.layer", "taggram", r"backbones\.musicnn\.layer: 'taggram' is not one of"),
        ("tuning.combinations", [{"backbone": "musicnn_msd", "feature": "mel"}],
         r"tuning\.combinations\.0: musicnn backbones embed the audio .*'musicnn_msd' \+ 'mel'"),
        ("predict.model", "vgg16/mel/round_7",
         r"predict\.model: 'vgg16/mel/round_7': round 7 does not exist: its chain has rounds 0-2\. "
         r"The final models of a run are"),
        ("predict.model", "resnet101/mel/round_0",
         r"predict\.model: 'resnet101/mel/round_0': backbone 'resnet101' is not in backbones\.names"),
        ("predict.model", "musicnn_msd/mel/round_0",
         r"musicnn_msd embeds the audio: its feature is 'audio'"),
    ],
)
def test_bad_config_names_the_key(path, value, message):
    config = with_change(path, value)
    if path == "tuning.combinations":
        config["backbones"]["names"] = ["vgg16", "musicnn_msd"]
    if path == "dataset.root":
        config["dataset"]["kind"] = "gtzan"
        message = r"dataset\.root: folder '/no/such/folder' does not exist"
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match=r"preset: unknown preset .nope.; known: \[.gtzan., .gtzan_filtered.\]"):
        validate_config({"preset": "nope"})


def test_preset_is_merged_over_config_and_command_line_wins(tmp_path):
    (tmp_path / "genres_original").mkdir()
    config = validate_config(
        {"preset": "gtzan", "features": {"image_size": 64}},
        overrides={"dataset": {"root": str(tmp_path)}, "features": {"shard_size": 7}},
    )
    assert config["features"]["image_size"] == 224  # preset over config.yaml
    assert config["features"]["shard_size"] == 7  # command line over preset
    assert config["dataset"]["kind"] == "gtzan" and config["dataset"]["root"] == str(tmp_path)


def test_musicnn_checkpoints_folder_must_hold_the_models(tmp_path):
    config = with_change("backbones.names", ["vgg16", "musicnn_mtt"])
    config["backbones"]["musicnn"] = {"checkpoints": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"backbones\.musicnn\.checkpoints: musicnn_mtt needs "
                       r".*MTT_musicnn/\.index, which does not exist"):
        validate_config(config)
    validated = validate_config(with_change("backbones.names", ["musicnn_msd"]))
    assert validated["backbones"]["musicnn"] == {"layer": "max_pool", "checkpoints": None,
                                                 "batch_size": 64}


def _readme_preset_table():
    """{preset: {key: value}} from the README's table of what each preset sets."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("<!-- preset table -->")[1].split("<!-- end of preset table -->")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    header = [cell.strip(" `") for cell in section.splitlines()[2].strip("|").split("|")]
    presets = {name: {} for name in header[1:]}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        key = cells[0].strip("`")
        for name, cell in zip(header[1:], cells[1:]):
            presets[name][key] = yaml.safe_load(cell.strip("`"))
    return presets


@pytest.mark.parametrize("preset", ["gtzan", "gtzan_filtered"])
def test_each_preset_sets_every_key_the_readme_says(preset, tmp_path):
    (tmp_path / "genres_original").mkdir()
    config = validate_config({**DEMO, "preset": preset}, overrides={"dataset": {"root": str(tmp_path)}})
    table = _readme_preset_table()[preset]
    assert len(table) >= 10
    for key, value in table.items():
        node = config
        for part in key.split("."):
            node = node[part] if not part.isdigit() else node[int(part)]
        assert node == value, key
    # the run the study exists for: ImageNet weights, not the demo's random initialisation
    assert config["backbones"]["weights"] == "imagenet"
    assert config["splits"]["lists"] == ("fault_filtered" if preset == "gtzan_filtered" else None)


def test_a_weights_file_fits_one_backbone_only(tmp_path):
    weights = tmp_path / "mine.weights.h5"
    weights.write_bytes(b"x")
    config = with_change("backbones.weights", str(weights))
    with pytest.raises(ConfigError, match=r"backbones\.weights: the weights file .* fits one backbone"):
        validate_config(config)
    config["backbones"]["names"] = ["vgg16", "musicnn_msd"]
    assert validate_config(config)["backbones"]["weights"] == str(weights)


def test_the_synthetic_corpus_renders_only_gtzans_genres():
    with pytest.raises(ConfigError, match=r"dataset\.genres: the synthetic demo corpus renders only"):
        validate_config(with_change("dataset.genres", ["blues", "zouk"]))


def test_fault_filtered_or_own_lists_or_none(tmp_path):
    assert validate_config(with_change("splits.lists", "fault_filtered"))["splits"]["lists"] == "fault_filtered"
    with pytest.raises(ConfigError, match=r"splits\.lists"):
        validate_config(with_change("splits.lists", "artist_filtered"))


def test_nested_command_line_values_are_typed_as_in_a_config_file(tmp_path):
    """Snakemake reads nested --config values as text ('5'); they must mean what they
    would in config.yaml, with or without a preset."""
    (tmp_path / "genres_original").mkdir()
    overrides = {"predict": {"shard_size": "5", "name": "my_run"}, "audio": {"min_seconds": "4.0"},
                 "screening": {"min_f1": "null"}, "dataset": {"root": str(tmp_path)}}
    for preset in (None, "gtzan"):
        config = validate_config({**DEMO, "preset": preset}, overrides=overrides)
        assert config["predict"]["shard_size"] == 5 and config["predict"]["name"] == "my_run"
        assert config["audio"]["min_seconds"] == 4.0 and config["screening"]["min_f1"] is None
