"""One family's augmented views of the training tracks (`perturb_training_clips`), as
audio files and a table that the main run's feature and musicnn rules read like a shard
of the corpus: its rows are `<family>/<view>/<clip>` ids (`genreflow.models.views`), so
the views' images and embeddings keep their track's id beside their own.

Views are stored as 24-bit FLAC at the clips' rate and length, as the robustness stage
stores its perturbed test clips (lossless to -144 dBFS, far below the images' 80 dB).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import pandas as pd

from genreflow.io import atomic_path, write_csv

TABLE_COLUMNS = ("clip", "genre", "path", "status", "family", "view", "source_clip",
                 "parameters")


def accepted_clips_of(clips_csv: str, manifests: Mapping[str, str]) -> pd.DataFrame:
    """The accepted clips of the splits in `manifests` (train, and valid under
    cross-validation): clip, genre, path, in corpus order."""
    clips = pd.read_csv(clips_csv, dtype={"clip": str}, keep_default_na=False)
    wanted = set()
    for split, path in manifests.items():
        if split == "test":
            raise ValueError("augmented views are never drawn from test tracks")
        wanted |= set(pd.read_csv(path, dtype={"clip": str})["clip"])
    chosen = clips[clips["clip"].isin(wanted)]
    missing = sorted(wanted - set(chosen["clip"]))
    if missing:
        raise ValueError(f"{sorted(manifests.values())}: clips {missing[:5]} are not accepted "
                         f"clips of {clips_csv}; the split and the corpus are of different runs")
    return chosen[["clip", "genre", "path"]].reset_index(drop=True)


# One job's entry point: a parameter per input, param and output of its rule
# (perturb_training_clips), passed by name from the thin script.
def perturb_training_clips(
    clips_csv: str,
    manifests: Mapping[str, str],
    family: str,
    spec: Mapping,
    families: Sequence[str],
    views: int,
    seed: int,
    audio,  # genreflow.audio.AudioSettings
    out_folder: str,
    out_table: str,
    log=print,
) -> None:
    """The views of the tracks of `manifests` that `assign_families` gives to `family`
    (config block `spec`), each drawn with `view_rng(family, view, clip, seed)`: the same
    audio in every run, whatever the other families are set to."""
    import time

    import numpy as np
    import soundfile

    from genreflow.audio import BadClip, check_signal, load_clip
    from genreflow.augment.families import assign_families, make_view
    from genreflow.models.views import view_clip

    started = time.perf_counter()
    clips = accepted_clips_of(clips_csv, manifests)
    os.makedirs(out_folder, exist_ok=True)
    rows, changes = [], []
    for clip in clips.itertuples(index=False):
        mine = [view for view, name in enumerate(assign_families(clip.clip, views, families, seed))
                if name == family]
        if not mine:
            continue
        y, _ = load_clip(clip.path, audio)
        for view in mine:
            perturbed, drawn = make_view(y, audio.sample_rate, family, spec, view, clip.clip,
                                         seed)
            name = view_clip(family, view, clip.clip)
            try:
                check_signal(perturbed, audio, audio.seconds)
            except BadClip as reason:
                raise ValueError(
                    f"augmentation family {family} ({json.dumps(drawn)}) makes view {name} of "
                    f"{clip.path} unusable: {reason}. Narrow its ranges in "
                    f"training.augment.families.{family}") from None
            path = os.path.join(out_folder, str(view), f"{clip.clip}.flac")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_path(path) as tmp:
                soundfile.write(tmp, perturbed, audio.sample_rate, format="FLAC",
                                subtype="PCM_24")
            rows.append({"clip": name, "genre": clip.genre, "path": path, "status": "accepted",
                         "family": family, "view": view, "source_clip": clip.clip,
                         "parameters": json.dumps(drawn, sort_keys=True)})
            difference = np.sqrt(np.mean((perturbed.astype(np.float64) - y) ** 2))
            changes.append(20 * np.log10(max(difference, 1e-12)
                                         / max(np.sqrt(np.mean(y**2.0)), 1e-12)))
    write_csv(out_table, pd.DataFrame(rows, columns=list(TABLE_COLUMNS)))
    log(f"{family}: {len(rows)} views of {len(clips)} tracks of {sorted(manifests)} "
        f"({views} view(s) a track over the families {list(families)})")
    if changes:
        log(f"difference from the clean clips: median {np.median(changes):.1f} dB re their RMS "
            f"(range {min(changes):.1f} to {max(changes):.1f})")
    log(f"wrote {len(rows)} views to {out_folder} in {time.perf_counter() - started:.1f} s")
