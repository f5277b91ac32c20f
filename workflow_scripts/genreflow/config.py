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

from genreflow.hyperparameters import TABLE, is_int, range_type, value_problem
from genreflow.names import AUDIO_FEATURE, BASELINE, FEATURES, GTZAN_GENRES, is_audio_backbone
from genreflow.registry import IMAGE_BACKBONES

SCHEMA_FILE = "config.schema.yaml"
# Snakemake's --config takes no dotted keys (`dataset.root=...` stops it with a traceback
# before this package runs): a nested value is given as a YAML mapping, merged key by key.
ROOT_FIX = "--config dataset='{root: /data/gtzan}'"


class ConfigError(ValueError):
    pass


def load_schema() -> dict:
    text = resources.files("genreflow").joinpath("schemas", SCHEMA_FILE).read_text()
    return yaml.safe_load(text)


def load_preset(name: str) -> dict:
    """A preset's values; a preset that says `extends: <other>` is merged over that one."""
    source = resources.files("genreflow").joinpath("presets", f"{name}.yaml")
    if not source.is_file():
        known = sorted(
            Path(entry.name).stem
            for entry in resources.files("genreflow").joinpath("presets").iterdir()
            if entry.name.endswith(".yaml")
        )
        raise ConfigError(f"config key preset: unknown preset {name!r}; known: {known}")
    preset = yaml.safe_load(source.read_text()) or {}
    base = preset.pop("extends", None)
    return deep_merge(load_preset(base), preset) if base else preset


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


def command_line_values(values):
    """--config values with their nested scalars typed as in a config file.

    Snakemake reads `--config predict='{input: music, shard_size: 5}'` with YAML's base
    loader, so every nested value arrives as text ('5', 'true', 'null'); here they are read
    as YAML reads them in config.yaml, so that the command line means what a file would.
    """
    if isinstance(values, dict):
        return {key: command_line_values(value) for key, value in values.items()}
    if isinstance(values, list):
        return [command_line_values(value) for value in values]
    if isinstance(values, str):
        try:
            typed = yaml.safe_load(values)
        except yaml.YAMLError:
            return values
        return typed if typed is None or isinstance(typed, (bool, int, float)) else values
    return values


def validate_config(config: dict, base_dir: str = ".", overrides: dict | None = None) -> dict:
    """Return a validated copy of `config` with every default filled in.

    A `preset` is merged over `config`, then `overrides` (the command line's --config
    values) over both. Raises ConfigError listing every problem found, each naming its key.
    """
    config = copy.deepcopy(config)
    overrides = command_line_values(overrides or {})
    if config.get("preset"):
        config = deep_merge(config, load_preset(config["preset"]))
    config = deep_merge(config, overrides)
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


# Long because it is a list: each block is one check across config keys with its own
# message; split up, there would be no one place that lists them.
def _relations(config: dict, base_dir: str) -> list[str]:
    problems = []
    dataset, audio = config["dataset"], config["audio"]
    if dataset["kind"] == "gtzan":
        if not dataset["root"]:
            problems.append(
                "config key dataset.root: required when dataset.kind is gtzan; set it to the "
                f"folder that holds genres_original/ (e.g. {ROOT_FIX})"
            )
        elif not os.path.isdir(os.path.join(base_dir, dataset["root"])):
            problems.append(
                f"config key dataset.root: folder {dataset['root']!r} does not exist; set it "
                f"to the folder that holds genres_original/ (e.g. {ROOT_FIX})"
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
    for name in FEATURES:
        block = config["features"][name]
        if block.get("fmax") is not None and block["fmax"] > nyquist:
            problems.append(
                f"config key features.{name}.fmax: {block['fmax']} is above the Nyquist "
                f"frequency {nyquist} of audio.sample_rate"
            )
        if block.get("fmax") is not None and block["fmin"] >= block["fmax"]:
            problems.append(f"config key features.{name}.fmin: must be below fmax")
        frame_seconds = block["n_fft"] / audio["sample_rate"]
        lengths = [segment, *(config["segments"]["compare"] or [])]
        shortest = min(length if length is not None else audio["seconds"] for length in lengths)
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
        spec = IMAGE_BACKBONES.get(backbone)
        if spec is not None and image_size < spec.min_size:
            problems.append(
                f"config key features.image_size: {image_size} is below the minimum input "
                f"size {spec.min_size} of backbone {backbone}; raise it or "
                f"remove {backbone} from backbones.names"
            )
    weights = config["backbones"]["weights"]
    image_backbones = [name for name in config["backbones"]["names"] if name in IMAGE_BACKBONES]
    if weights not in ("imagenet", "none"):
        if not os.path.isfile(os.path.join(base_dir, weights)):
            problems.append(
                f"config key backbones.weights: {weights!r} is neither 'imagenet', 'none' nor "
                "an existing weights file"
            )
        elif len(image_backbones) > 1:
            problems.append(
                f"config key backbones.weights: the weights file {weights!r} fits one "
                f"backbone, but backbones.names lists {len(image_backbones)} image backbones "
                f"{image_backbones}; keep the one it belongs to, or use 'imagenet'"
            )
    if dataset["kind"] == "synthetic":
        unknown = [genre for genre in dataset["genres"] if genre not in GTZAN_GENRES]
        if unknown:
            problems.append(
                f"config key dataset.genres: the synthetic demo corpus renders only GTZAN's "
                f"genres {list(GTZAN_GENRES)}, not {unknown}; for other genres use dataset.kind "
                "gtzan with a folder of one sub-folder per genre"
            )
    problems.extend(_audio_backbone_problems(config, base_dir))
    for i, length in enumerate(config["segments"]["compare"] or []):
        if length is not None and length > audio["seconds"]:
            problems.append(
                f"config key segments.compare.{i}: {length} exceeds audio.seconds "
                f"{audio['seconds']}"
            )
    fractions = config["splits"]["fractions"]
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        problems.append(
            f"config key splits.fractions: {fractions} adds up to {sum(fractions.values()):g}, "
            "not 1"
        )
    lists = config["splits"]["lists"]
    for split, path in (lists if isinstance(lists, dict) else {}).items():
        if not os.path.isfile(os.path.join(base_dir, path)):
            problems.append(f"config key splits.lists.{split}: file {path!r} does not exist")
    problems.extend(_tuning_relations(config))
    problems.extend(_augment_problems(config))
    problems.extend(_predict_model_problems(config))
    problems.extend(_robustness_problems(config))
    source = config["predict"]["input"]
    if source is not None and not os.path.exists(os.path.join(base_dir, source)):
        problems.append(
            f"config key predict.input: {source!r} does not exist; give the folder of the "
            "music to classify (--config predict='{input: /path/to/music}')"
        )
    return problems


def sorted_block(block):
    """A key-sorted copy, so that Snakemake's params (compared by repr) ignore key order."""
    if isinstance(block, dict):
        return {key: sorted_block(block[key]) for key in sorted(block)}
    if isinstance(block, list):
        return [sorted_block(item) for item in block]
    return block


# ------------------------------------------------------------------------------ tuning
def _check_values(key: str, name: str, value, per_layer: bool) -> list[str]:
    values = value if per_layer and isinstance(value, list) else [value]
    problems = [value_problem(name, item) for item in values]
    return [f"config key {key}: {problem}" for problem in problems if problem]


def _dimension_problems(
    key: str, name: str, dimension: dict, per_layer_of: str | None
) -> list[str]:
    problems = []
    if dimension["per_layer"] is not None and dimension["per_layer"] != per_layer_of:
        allowed = f"per_layer: {per_layer_of}" if per_layer_of else "no per_layer"
        problems.append(
            f"config key {key}.per_layer: {name} cannot be searched per "
            f"{dimension['per_layer']!r} ({allowed})"
        )
    if dimension["type"] == "categorical":
        if not dimension.get("choices"):
            problems.append(f"config key {key}.choices: a categorical dimension needs choices")
        else:
            for choice in dimension["choices"]:
                problems.extend(_check_values(f"{key}.choices", name, choice, False))
        return problems
    expected = range_type(name)
    if expected != dimension["type"]:
        allowed = f"type {expected} or categorical" if expected else "type categorical"
        return [f"config key {key}.type: {name} is searched with {allowed}"]
    low, high = dimension.get("low"), dimension.get("high")
    if low is None or high is None:
        return [f"config key {key}: a {dimension['type']} dimension needs low and high"]
    if expected == "int" and not (is_int(low) and is_int(high)):
        problems.append(f"config key {key}: low and high of an int dimension must be integers")
    if not low < high:
        problems.append(f"config key {key}: low {low} must be below high {high}")
    if dimension["log"] and low <= 0:
        problems.append(f"config key {key}: a log-scale dimension needs low > 0")
    if dimension["log"] and dimension["step"] is not None:
        problems.append(f"config key {key}: a log-scale dimension takes no step")
    problems.extend(_check_values(f"{key}.low", name, low, False))
    problems.extend(_check_values(f"{key}.high", name, high, False))
    return problems


def tuning_round_names(tuning_round: dict) -> set[str]:
    """Names a round determines (searches, fixes or inherits); the next round may inherit them."""
    return (
        set(tuning_round["scientific"])
        | set(tuning_round["nuisance"])
        | set(tuning_round["fixed"])
        | set(tuning_round["inherit"])
    )


def _rounds_problems(key: str, rounds: list[dict], kind: str) -> list[str]:
    known = TABLE[kind]
    problems = []
    previous = None
    for n, tuning_round in enumerate(rounds):
        here = f"{key}.{n}"
        seen: dict[str, str] = {}
        sections = [
            (section, name)
            for section in ("scientific", "nuisance", "fixed", "inherit")
            for name in tuning_round[section]
        ]
        for section, name in sections:
            if name not in known:
                problems.append(
                    f"config key {here}.{section}: unknown hyperparameter {name!r}; "
                    f"known: {sorted(known)}"
                )
                continue
            if name in seen:
                problems.append(
                    f"config key {here}.{section}: {name!r} is also in {seen[name]}; a "
                    "hyperparameter is searched, fixed or inherited, not several at once"
                )
            seen[name] = section
            if section in ("scientific", "nuisance"):
                problems.extend(
                    _dimension_problems(
                        f"{here}.{section}.{name}", name, tuning_round[section][name], known[name]
                    )
                )
            elif section == "fixed":
                problems.extend(
                    _check_values(
                        f"{here}.fixed.{name}",
                        name,
                        tuning_round["fixed"][name],
                        known[name] is not None,
                    )
                )
        for name in tuning_round["inherit"]:
            if previous is None:
                problems.append(
                    f"config key {here}.inherit: round 0 has no previous round to inherit "
                    f"{name!r} from"
                )
            elif name in known and name not in tuning_round_names(previous):
                problems.append(
                    f"config key {here}.inherit: {name!r} is not produced by round {n - 1}, "
                    f"which searches, fixes or inherits only {sorted(tuning_round_names(previous))}"
                )
        previous = tuning_round
    return problems


def _robustness_problems(config: dict) -> list[str]:
    """Perturbations must make sense at the clips' sample rate."""
    rate = config["audio"]["sample_rate"]
    problems = []
    for name, block in config["robustness"]["perturbations"].items():
        key = f"config key robustness.perturbations.{name}"
        if block["kind"] in ("lowpass", "highpass") and block["cutoff_hz"] >= rate / 2:
            problems.append(f"{key}.cutoff_hz: {block['cutoff_hz']} is not below the Nyquist "
                            f"frequency {rate / 2} of audio.sample_rate")
        if block["kind"] == "resample" and block["rate"] >= rate:
            problems.append(f"{key}.rate: {block['rate']} is not below audio.sample_rate {rate}, "
                            "so the round trip would change nothing")
    return problems


def _augment_problems(config: dict) -> list[str]:
    """Views a model trains on must be drawn, from families that make sense."""
    from genreflow.augment.families import parameters
    from genreflow.plan import augment_values

    augment = config["training"]["augment"]
    problems = []
    for name, block in augment["families"].items():
        try:
            parameters(block)
        except ValueError as error:
            problems.append(f"config key training.augment.families.{name}: {error}")
    if augment["views"] > 0 and not augment["families"]:
        problems.append("config key training.augment.families: training.augment.views is "
                        f"{augment['views']} but no family is given to draw the views from")
    for key, block in (("tuning", config["tuning"]), ("tuning.baseline",
                                                      config["tuning"]["baseline"])):
        wanted = sorted(augment_values(block) - {"none"})
        if wanted and augment["views"] == 0:
            problems.append(
                f"config key {key}: its defaults or rounds train with augment {wanted}, but "
                "training.augment.views is 0, so there are no views; set training.augment."
                "views (e.g. 2) or use augment none")
    return problems


def _audio_backbone_problems(config: dict, base_dir: str) -> list[str]:
    """musicnn backbones need their checkpoints (the musicnn package) before any job runs."""
    from genreflow.audio_embeddings import CheckpointError, checkpoint_files, checkpoint_root

    audio_backbones = [name for name in config["backbones"]["names"] if is_audio_backbone(name)]
    if not audio_backbones:
        return []
    setting = config["backbones"]["musicnn"]["checkpoints"]
    try:
        root = checkpoint_root(setting and os.path.join(base_dir, setting))
    except CheckpointError as error:
        return [f"config key backbones.names: {error}"]
    problems = []
    for backbone in audio_backbones:
        missing = [path for path in checkpoint_files(backbone, root).values()
                   if not os.path.isfile(path)]
        if missing:
            problems.append(
                f"config key backbones.musicnn.checkpoints: {backbone} needs {missing[0]}, "
                "which does not exist"
            )
    return problems


def _tuning_relations(config: dict) -> list[str]:
    tuning = config["tuning"]
    problems = []
    combinations = tuning["combinations"]
    if combinations != "selection":
        backbones = config["backbones"]["names"]
        features = config["screening"]["features"]
        seen = set()
        for i, pair in enumerate(combinations):
            if pair["backbone"] not in backbones:
                problems.append(
                    f"config key tuning.combinations.{i}.backbone: {pair['backbone']!r} is not "
                    f"in backbones.names {backbones}"
                )
            if is_audio_backbone(pair["backbone"]) or pair["feature"] == AUDIO_FEATURE:
                if is_audio_backbone(pair["backbone"]) != (pair["feature"] == AUDIO_FEATURE):
                    problems.append(
                        f"config key tuning.combinations.{i}: musicnn backbones embed the "
                        "audio (feature `audio`) and image backbones the images; "
                        f"{pair['backbone']!r} + {pair['feature']!r} is neither"
                    )
            elif pair["feature"] not in features:
                problems.append(
                    f"config key tuning.combinations.{i}.feature: {pair['feature']!r} is not "
                    f"in screening.features {features}"
                )
            if (pair["backbone"], pair["feature"]) in seen:
                problems.append(f"config key tuning.combinations.{i}: listed twice")
            seen.add((pair["backbone"], pair["feature"]))
    baseline = tuning["baseline"]
    if baseline["enabled"] and baseline["feature"] == "best" and combinations != "selection":
        problems.append(
            "config key tuning.baseline.feature: 'best' means the best feature of the "
            "screening selection, which tuning.combinations does not use; name a feature"
        )
    for kind, key, block in (
        ("transfer", "tuning", tuning),
        ("baseline", "tuning.baseline", baseline),
    ):
        for name, value in block["defaults"].items():
            problems.extend(
                _check_values(
                    f"{key}.defaults.{name}",
                    name,
                    value,
                    TABLE[kind][name] is not None,
                )
            )
        problems.extend(_rounds_problems(f"{key}.rounds", block["rounds"], kind))
    return problems


def _predict_model_problems(config: dict) -> list[str]:
    """predict.model must name a final model this config can have: a backbone of
    backbones.names (or the baseline CNN) on a feature it is screened or trained on, and a
    round of its chain."""
    model = config["predict"]["model"]
    if model is None:
        return []
    backbone, feature, round_part = model.split("/")
    n = int(round_part.removeprefix("round_"))
    tuning = config["tuning"]
    baseline = tuning["baseline"]
    problems = []
    if backbone == BASELINE:
        if not baseline["enabled"]:
            problems.append("the baseline CNN is off (tuning.baseline.enabled)")
        elif feature not in FEATURES:
            problems.append(f"the baseline CNN trains on an image feature {list(FEATURES)}")
        rounds = len(baseline["rounds"])
    else:
        rounds = len(tuning["rounds"])
        expected = AUDIO_FEATURE if is_audio_backbone(backbone) else None
        if backbone not in config["backbones"]["names"]:
            problems.append(f"backbone {backbone!r} is not in backbones.names "
                            f"{config['backbones']['names']}")
        elif expected and feature != expected:
            problems.append(f"{backbone} embeds the audio: its feature is {expected!r}")
        elif not expected and feature not in config["screening"]["features"]:
            problems.append(f"feature {feature!r} is not in screening.features "
                            f"{config['screening']['features']}")
    if n >= rounds:
        problems.append(f"round {n} does not exist: its chain has rounds 0-{rounds - 1}")
    if not problems:
        return []
    return [f"config key predict.model: {model!r}: {'; '.join(problems)}. The final models "
            "of a run are <backbone>/<feature>/round_<n> of its tuned combinations (they are "
            "listed in results/final/summary.csv); null predicts with the one chosen on "
            "validation"]

