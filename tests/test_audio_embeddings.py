"""musicnn embeddings: input, patches, checkpoint checks and the restore verification.

Anything that builds musicnn's graph runs in a subprocess with TF_USE_LEGACY_KERAS=1, as
the embed_audio job does: this pytest process has Keras 3 loaded, and musicnn must never
run in such a process.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import soundfile

from conftest import REPO, tone
from genreflow import audio_embeddings as ae
from genreflow.io import load_embeddings

ROOT = ae.checkpoint_root(None)


def run_legacy(script: str, timeout=300):
    """Run `script` in a fresh Python process the way embed_audio.py runs musicnn."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(REPO / "workflow_scripts")}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def corrupted_copy(tmp_path, flip_at=4_000_000):
    """A copy of the installed checkpoints whose MSD_musicnn data file has one byte changed."""
    root = tmp_path / "checkpoints"
    shutil.copytree(ROOT / "MSD_musicnn", root / "MSD_musicnn")
    data = root / "MSD_musicnn" / ".data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[flip_at] ^= 0xFF
    data.write_bytes(bytes(raw))
    return root


def test_installed_checkpoints_match_the_wheel_md5s():
    for backbone in ae.MUSICNN_MODELS:
        ae.check_checkpoint_files(backbone, ROOT)


def test_a_corrupted_checkpoint_copy_is_refused_naming_file_and_fix(tmp_path):
    root = corrupted_copy(tmp_path)
    with pytest.raises(ae.CheckpointError) as error:
        ae.check_checkpoint_files("musicnn_msd", root)
    message = str(error.value)
    assert ".data-00000-of-00001" in message and "fa0ae3fd01780a22ab969d994a4415be" in message
    assert "pip install --force-reinstall --no-deps musicnn==0.1.0" in message
    (root / "MSD_musicnn" / ".index").unlink()
    with pytest.raises(ae.CheckpointError, match=r"\.index is missing"):
        ae.check_checkpoint_files("musicnn_msd", root)


def test_the_embedder_refuses_to_run_in_a_keras_3_process(monkeypatch):
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    with pytest.raises(RuntimeError, match="TF_USE_LEGACY_KERAS=1"):
        ae.MusicnnEmbedder("musicnn_msd", ROOT)


def test_restore_check_fails_on_a_corrupted_copy_and_on_a_silent_restore_failure(tmp_path):
    root = corrupted_copy(tmp_path)
    result = run_legacy(f"""
        import numpy as np, tensorflow as tf
        from genreflow import audio_embeddings as ae

        # 1. the corrupted copy is refused before TensorFlow reads it
        try:
            ae.MusicnnEmbedder("musicnn_msd", {str(root)!r})
        except ae.CheckpointError as error:
            print("CORRUPT:", error)

        # 2. without the md5 check TensorFlow restores the flipped byte as a weight: its
        #    checkpoint reader has no checksum there, which is why the files are hashed
        ae.check_checkpoint_files = lambda backbone, root: None
        ae.MusicnnEmbedder("musicnn_msd", {str(root)!r})
        print("LOADED: a corrupted checkpoint restores without the md5 check")

        # 3. a restore that silently did nothing (musicnn's bare except) leaves random
        #    weights: the verification against the checkpoint catches it
        tf.compat.v1.train.Saver.restore = lambda self, session, prefix: None
        try:
            ae.MusicnnEmbedder("musicnn_msd", {str(ae.checkpoint_root(None))!r})
        except ae.CheckpointError as error:
            print("SILENT:", error)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split(":")[0]: line for line in result.stdout.splitlines() if ":" in line}
    assert "md5" in lines["CORRUPT"] and "MSD_musicnn" in lines["CORRUPT"], result.stdout
    assert "LOADED" in lines, result.stdout
    assert "did not restore" in lines["SILENT"], result.stdout
    differing = int(lines["SILENT"].split("did not restore: ")[1].split(" of ")[0])
    # Every trainable kernel and BN parameter differs; only BN's zero/one-initialised
    # statistics could coincide with the checkpoint by chance.
    assert differing >= 20, lines["SILENT"]


def test_patches_pad_short_input_and_drop_the_remainder():
    short = np.ones((100, ae.N_MELS), np.float32)
    one = ae.patches(short)
    assert one.shape == (1, ae.PATCH_FRAMES, ae.N_MELS)
    assert one[0, :100].sum() == 100 * ae.N_MELS and one[0, 100:].sum() == 0
    frames = np.arange(400 * ae.N_MELS, dtype=np.float32).reshape(400, ae.N_MELS)
    two = ae.patches(frames)
    assert two.shape == (2, ae.PATCH_FRAMES, ae.N_MELS)
    np.testing.assert_array_equal(two[1], frames[ae.PATCH_FRAMES : 2 * ae.PATCH_FRAMES])


def test_musicnns_input_does_not_depend_on_the_recordings_level():
    """12 dB quieter, the same music gives the same input (it cost a musicnn model 0.32
    macro-F1 when it did not); a nearly silent window is raised by at most MAX_GAIN_DB."""
    rng = np.random.default_rng(0)
    y = (0.3 * rng.standard_normal(2 * ae.SAMPLE_RATE)).astype(np.float32)
    np.testing.assert_allclose(ae.log_mel(y), ae.log_mel(y * 10 ** (-12 / 20)), atol=1e-4)
    normalised = ae.level_normalised(y * 0.01)
    assert np.sqrt(np.mean(normalised.astype(np.float64) ** 2)) == pytest.approx(ae.REFERENCE_RMS,
                                                                                  rel=1e-5)
    whisper = np.full(1000, 1e-6, np.float32)
    assert np.max(ae.level_normalised(whisper)) == pytest.approx(1e-6 * 10 ** (ae.MAX_GAIN_DB / 20))


def test_log_mel_of_a_loud_clip_stays_finite_where_float16_overflows():
    t = np.arange(3 * ae.SAMPLE_RATE) / ae.SAMPLE_RATE
    loud = 0.99 * np.sign(np.sin(2 * np.pi * 220 * t))  # a full-scale square wave
    spectrogram = ae.log_mel(loud)
    assert spectrogram.shape == (3 * ae.SAMPLE_RATE // ae.FFT_HOP + 1, ae.N_MELS)
    assert np.isfinite(spectrogram).all()
    import librosa

    mel = librosa.feature.melspectrogram(y=loud.astype(np.float32), sr=ae.SAMPLE_RATE,
                                         hop_length=ae.FFT_HOP, n_fft=ae.FFT_SIZE,
                                         n_mels=ae.N_MELS).T
    with np.errstate(over="ignore"):
        assert np.isinf(np.log10(10000 * mel.astype(np.float16) + 1)).any()


def test_mean_by_owner_averages_each_examples_patches():
    values = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0]], np.float32)
    means = ae.mean_by_owner(values, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(means, [[2.0, 3.0], [10.0, 10.0]])


def test_embed_shard_writes_one_finite_embedding_per_segment(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    rows = []
    for i, genre in enumerate(["blues", "rock"]):
        path = folder / f"{genre}.00000.wav"
        soundfile.write(path, tone(6.0) * (0.3 + 0.3 * i), 22050)
        rows.append({"clip": f"{genre}.00000", "genre": genre, "path": str(path)})
    clips = tmp_path / "clips.csv"
    pd.DataFrame(rows).to_csv(clips, index=False)
    out = tmp_path / "emb.npz"
    result = run_legacy(f"""
        import pandas as pd
        from genreflow.audio import AudioSettings
        from genreflow.audio_embeddings import embed_shard
        embed_shard("musicnn_msd", {str(ROOT)!r}, "penultimate", pd.read_csv({str(clips)!r}),
                    AudioSettings(sample_rate=22050, seconds=6.0, min_seconds=3.0), 3.0,
                    ["blues", "rock"], {str(out)!r})
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    cache = load_embeddings(out)
    assert cache.embeddings.shape == (4, ae.MUSICNN_LAYERS["penultimate"])
    assert np.isfinite(cache.embeddings).all()
    assert list(cache.clip) == ["blues.00000"] * 2 + ["rock.00000"] * 2
    assert list(cache.segment) == [0, 1, 0, 1] and list(cache.label) == [0, 0, 1, 1]
    # A pretrained network: the two sounds get different embeddings.
    assert not np.allclose(cache.embeddings[0], cache.embeddings[2])


def test_join_embeddings_keeps_shard_order(tmp_path):
    from genreflow.io import save_embeddings

    save_embeddings(tmp_path / "a.npz", np.ones((2, 3)), ["x", "y"], [0, 0], [1, 2])
    save_embeddings(tmp_path / "b.npz", np.zeros((1, 3)), ["z"], [0], [0])
    ae.join_embeddings([tmp_path / "a.npz", tmp_path / "b.npz"], tmp_path / "all.npz",
                       log=lambda message: None)
    joined = load_embeddings(tmp_path / "all.npz")
    assert list(joined.clip) == ["x", "y", "z"] and joined.embeddings.shape == (3, 3)
    assert list(joined.label) == [1, 2, 0]


@pytest.mark.parametrize("layer", sorted(ae.MUSICNN_LAYERS))
def test_both_taggers_restore_verified_and_give_each_layer_its_width(layer):
    result = run_legacy(f"""
        import numpy as np
        from genreflow import audio_embeddings as ae
        for backbone in sorted(ae.MUSICNN_MODELS):
            embedder = ae.MusicnnEmbedder(backbone, ae.checkpoint_root(None), {layer!r})
            out = embedder(np.random.default_rng(0).random((3, ae.PATCH_FRAMES, ae.N_MELS),
                                                           dtype=np.float32))
            print(backbone, out.shape, bool(np.isfinite(out).all()))
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    width = ae.MUSICNN_LAYERS[layer]
    assert result.stdout.split("\n")[:2] == [
        f"musicnn_msd (3, {width}) True", f"musicnn_mtt (3, {width}) True"]
