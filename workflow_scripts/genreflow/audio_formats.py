"""What a file is, from its first bytes, so that a rejection says what is wrong with it.

libsndfile's own words are often beside the point: an .mp3 it cannot parse is reported as
"File does not exist or is not a regular file (possibly a pipe?)", a WAV cut inside its
header as "No 'data' chunk marker". `unreadable_reason` puts what the file is in front (not
an audio file, a damaged header, truncated, a format libsndfile cannot decode) and keeps
the decoder's words after it, which is what a user can search for.

Only the first bytes and the file size are read; nothing here decodes audio.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

HEAD_BYTES = 64

# Audio formats libsndfile decodes, by their magic bytes at offset 0.
_DECODABLE = (
    (b"RIFF", "WAV"),
    (b"RIFX", "WAV"),
    (b"RF64", "WAV (RF64)"),
    (b"FORM", "AIFF"),
    (b".snd", "AU"),
    (b"fLaC", "FLAC"),
    (b"OggS", "OGG"),
    (b"caff", "CAF"),
    (b"NIST_1A", "NIST SPHERE"),
    (b"ID3", "MP3"),  # an ID3 tag in front of MPEG audio frames
)
# Formats people keep music in that libsndfile cannot decode (convert them first).
_UNSUPPORTED = (
    (b"MThd", "MIDI (notes, not sound)"),
    (b"wvpk", "WavPack"),
    (b"MAC ", "Monkey's Audio (APE)"),
    (b"ADIF", "AAC (ADIF)"),
    (b"MPCK", "Musepack"),
    (b"MP+", "Musepack"),
    (b"#!AMR", "AMR"),
    (b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "WMA (ASF)"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (b".ra\xfd", "RealAudio"),
    (b"DSD ", "DSD (DSF)"),
    (b"FRM8", "DSD (DFF)"),
)
# Files that end up under an audio name by mistake.
_NOT_AUDIO = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes of a file say it is."""

    format: str | None  # "WAV", "MP3", ...; None: no audio format's header
    decodable: bool  # libsndfile decodes this format
    problem: str = ""  # what is wrong with the header or size, if the bytes show it
    looks_like: str = ""  # for a file without an audio header: what it seems to be


def sniff(path: str | os.PathLike) -> Sniffed:
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    size = os.path.getsize(path)
    for magic, name in _UNSUPPORTED:
        if head.startswith(magic):
            return Sniffed(name, False)
    if head[4:8] == b"ftyp":
        return Sniffed("MP4/M4A (AAC or ALAC)", False)
    for magic, name in _DECODABLE:
        if head.startswith(magic):
            return Sniffed(name, True, _size_problem(name, head, size))
    if head[8:12] == b"WAVE":
        # GTZAN's jazz.00054.wav: a WAV whose first four bytes are not "RIFF"
        return Sniffed("WAV", True, f"damaged WAV header: no 'RIFF' id at its start "
                                    f"(bytes {head[:4].hex(' ')})")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # an MPEG audio frame sync; layer bits 00 is AAC's ADTS stream instead
        if head[1] & 0x06 == 0:
            return Sniffed("AAC (ADTS)", False)
        return Sniffed("MP3", True)
    for magic, what in _NOT_AUDIO:
        if head.startswith(magic):
            return Sniffed(None, False, looks_like=what)
    return Sniffed(None, False, looks_like=_describe_bytes(head))


def _size_problem(name: str, head: bytes, size: int) -> str:
    """A container whose header gives more bytes than the file has: cut short."""
    if name == "WAV" and len(head) >= 8:
        declared = 8 + struct.unpack("<I" if head[:4] == b"RIFF" else ">I", head[4:8])[0]
    elif name == "AIFF" and len(head) >= 8:
        declared = 8 + struct.unpack(">I", head[4:8])[0]
    elif name == "AU" and len(head) >= 12:
        offset, data = struct.unpack(">II", head[4:12])
        if data == 0xFFFFFFFF:  # "unknown size", written by streaming encoders
            return ""
        declared = offset + data
    else:
        return ""
    # one byte of slack: a chunk's pad byte is sometimes left out
    if size + 1 < declared:
        return f"its header gives {declared} bytes, the file has {size}"
    return ""


def _describe_bytes(head: bytes) -> str:
    if not head:
        return "it is empty"
    text = head.split(b"\n")[0]
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        decoded = None
    if decoded is not None and decoded.isprintable() and decoded.strip():
        shown = decoded.strip()[:40]
        return f'it is text, starting "{shown}"'
    return f"it starts with bytes {head[:8].hex(' ')}"


def decoder_words(error: Exception, path: str | os.PathLike) -> str:
    """libsndfile's message without the "Error opening '<path>':" in front of it."""
    words = str(error)
    words = re.sub(r"^Error opening " + re.escape(repr(str(path))) + r":\s*", "", words)
    words = re.sub(r"^Error opening '[^']*':\s*", "", words)
    words = re.sub(r"^Error\s*:\s*", "", words)
    words = words.strip().rstrip(".")
    if words.startswith("File does not exist or is not a regular file"):
        # libsndfile's answer for an MPEG stream its decoder cannot parse
        words += " [libsndfile's words for a file it cannot parse; the file is there]"
    return words


def unreadable_reason(path: str | os.PathLike, error: Exception) -> str:
    """Why libsndfile could not decode `path` (it raised `error`): what the file is, then
    the decoder's words."""
    words = f"libsndfile: {decoder_words(error, path)}"
    try:
        found = sniff(path)
    except OSError as problem:
        return f"cannot read the file ({problem.strerror}); {words}"
    if found.format is None:
        return f"not an audio file: no audio format's header ({found.looks_like}); {words}"
    if not found.decodable:
        return (
            f"unsupported format {found.format}: libsndfile cannot decode it; convert it "
            f"to WAV or FLAC (e.g. with ffmpeg); {words}"
        )
    if found.problem.startswith("damaged"):
        return f"{found.problem}; {words}"
    if found.problem:
        return f"truncated {found.format} file: {found.problem}; {words}"
    return f"truncated or damaged {found.format} file: its data cannot be decoded; {words}"


def truncation(path: str | os.PathLike, header_frames: int, frames: int, rate: int) -> str:
    """How a decodable file whose audio ends early is cut short ("" if it is not): its
    header promises more frames (MP3, FLAC) or bytes (WAV, AIFF, AU) than it holds."""
    if header_frames > frames:
        return f"its header gives {header_frames / rate:.2f} s, the data ends at {frames / rate:.2f} s"
    try:
        problem = sniff(path).problem
    except OSError:
        return ""
    return "" if problem.startswith("damaged") else problem
