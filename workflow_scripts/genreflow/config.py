"""Validation of config.yaml: the JSON schema fills defaults and checks types, then the
checks that a schema cannot express (relations between keys, files that must exist).

Every error names the key and says how to fix it, and all of this runs when Snakemake
parses the workflow, before any job starts.
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path

import yaml

SCHEMA_FILE = "config.schema.yaml"
# Smallest input side of each backbone, here rather than read from genreflow.models so
# that validating a config does not import TensorFlow (seconds on every `snakemake -n`);
# tests/test_models.py checks that the two agree.
BACKBONE_MIN_SIZES = {"efficientnetb0": 32, "inceptionv3": 75, "resnet50": 32, "vgg16": 32}


class ConfigError(ValueError):
    pass


def load_schema() -> dict:
    text = resources.files("genreflow").joinpath("schemas", SCHEMA_FILE).read_text()
    return yaml.safe_load(text)


def load_preset(name: str) -> dict:
    source = resources.files("genreflow").joinpath("presets", f"{name}.yaml")
    if not source.is_file():
        known = sorted(
            Path(entry.name).stem
            for entry in resources.files("genreflow").joinpath("presets").iterdir()
            if entry.name.endswith(".yaml")
        )
        raise ConfigError(f"config key preset: unknown preset {name!r}; known: {known}")
    return yaml.safe_load(source.read_text()) or {}


def deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validator_filling_defaults(schema: dict):
    """A validator that also writes each property's `default` into the instance."""
    from jsonschema import Draft202012Validator, validators

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from Draft202012Validator.VALIDATORS["properties"](
            validator, properties, instance, schema
        )

    cls = validators.extend(Draft202012Validator, {"properties": set_defaults})
    return cls(schema)


def _describe(error) -> str:
    key = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    message = error.message
    if error.validator == "type" and isinstance(error.instance, str):
        try:
            float(error.instance)
            message += (
                f" (YAML reads {error.instance} as text: write it with a decimal point, "
                "e.g. 1.0e-3, or as a plain number)"
            )
        except ValueError:
            pass
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        message += f"; allowed keys here: {allowed}"
    return f"config key {key}: {message}"


def validate_config(config: dict, base_dir: str = ".", overrides: dict | None = None) -> dict:
    """Return a validated copy of `config` with every default filled in.

    A `preset` is merged over `config`, then `overrides` (the command line's --config
    values) over both. Raises ConfigError listing every problem found, each naming its key.
    """
    config = copy.deepcopy(config)
    if config.get("preset"):
        config = deep_merge(deep_merge(config, load_preset(config["preset"])), overrides or {})
    validator = _validator_filling_defaults(load_schema())
    # Two passes: the first fills defaults, so that the second reports errors on the
    # complete config (a default nested in a default is only filled on the way down).
    list(validator.iter_errors(config))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    problems = [_describe(error) for error in errors]
    if not problems:
        problems = _relations(config, base_dir)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def _relations(config: dict, base_dir: str) -> list[str]:
    problems = []
    dataset, audio = config["dataset"], config["audio"]
    if dataset["kind"] == "gtzan":
        if not dataset["root"]:
            problems.append(
                "config key dataset.root: required when dataset.kind is gtzan; set it to the "
                "folder that holds genres_original/ (e.g. --config dataset.root=/data/gtzan)"
            )
        elif not os.path.isdir(os.path.join(base_dir, dataset["root"])):
            problems.append(
                f"config key dataset.root: folder {dataset['root']!r} does not exist"
            )
    elif dataset["synthetic"]["seconds"] < audio["min_seconds"]:
        problems.append(
            f"config key dataset.synthetic.seconds: {dataset['synthetic']['seconds']} is below "
            f"audio.min_seconds {audio['min_seconds']}, so every clip would be rejected"
        )
    if audio["min_seconds"] > audio["seconds"]:
        problems.append(
            f"config key audio.min_seconds: {audio['min_seconds']} exceeds audio.seconds "
            f"{audio['seconds']}"
        )
    segment = config["segments"]["seconds"]
    if segment is not None and segment > audio["seconds"]:
        problems.append(
            f"config key segments.seconds: {segment} exceeds audio.seconds {audio['seconds']}"
        )
    nyquist = audio["sample_rate"] / 2
    for name in ("mel", "mfcc", "stft", "spectrogram", "chroma"):
        block = config["features"][name]
        if block.get("fmax") is not None and block["fmax"] > nyquist:
            problems.append(
                f"config key features.{name}.fmax: {block['fmax']} is above the Nyquist "
                f"frequency {nyquist} of audio.sample_rate"
            )
        if block.get("fmax") is not None and block["fmin"] >= block["fmax"]:
            problems.append(f"config key features.{name}.fmin: must be below fmax")
        frame_seconds = block["n_fft"] / audio["sample_rate"]
        shortest = segment if segment is not None else audio["seconds"]
        if frame_seconds > shortest:
            problems.append(
                f"config key features.{name}.n_fft: {block['n_fft']} samples is longer than "
                f"a clip or segment ({shortest} s)"
            )
    mfcc = config["features"]["mfcc"]
    if mfcc["n_mfcc"] > mfcc["n_mels"]:
        problems.append(
            f"config key features.mfcc.n_mfcc: {mfcc['n_mfcc']} exceeds features.mfcc.n_mels "
            f"{mfcc['n_mels']}"
        )
    image_size = config["features"]["image_size"]
    for backbone in config["backbones"]["names"]:
        if image_size < BACKBONE_MIN_SIZES[backbone]:
            problems.append(
                f"config key features.image_size: {image_size} is below the minimum input "
                f"size {BACKBONE_MIN_SIZES[backbone]} of backbone {backbone}; raise it or "
                f"remove {backbone} from backbones.names"
            )
    weights = config["backbones"]["weights"]
    if weights not in ("imagenet", "none") and not os.path.isfile(os.path.join(base_dir, weights)):
        problems.append(
            f"config key backbones.weights: {weights!r} is neither 'imagenet', 'none' nor an "
            "existing weights file"
        )
    fractions = config["splits"]["fractions"]
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        problems.append(
            f"config key splits.fractions: {fractions} adds up to {sum(fractions.values()):g}, "
            "not 1"
        )
    lists = config["splits"]["lists"]
    for split, path in (lists or {}).items():
        if not os.path.isfile(os.path.join(base_dir, path)):
            problems.append(f"config key splits.lists.{split}: file {path!r} does not exist")
    return problems


def sorted_block(block):
    """A key-sorted copy, so that Snakemake's params (compared by repr) ignore key order."""
    if isinstance(block, dict):
        return {key: sorted_block(block[key]) for key in sorted(block)}
    if isinstance(block, list):
        return [sorted_block(item) for item in block]
    return block
