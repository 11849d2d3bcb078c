"""Anchor texts: the shared text every model reads to fit (and evaluate) codecs.

The shipped set (anchors.txt, 400 lines of varied English written for this project) or
any UTF-8 text file, one anchor per non-empty line. Every fifth text (index % 5 == 4) is
held out: fitting never sees it, `latentray codec-eval` measures on it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from latentray.channels.errors import CodecError

SHIPPED = Path(__file__).with_name("anchors.txt")
HOLD_OUT_EVERY = 5
MIN_TEXTS = 20


def load_anchor_texts(path=None) -> list:
    p = Path(path) if path else SHIPPED
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CodecError(f"--anchors {p}: cannot read it ({exc.strerror}); give a UTF-8 text file, one anchor a line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"--anchors {p}: not UTF-8 text (byte {exc.start}); give a UTF-8 text file") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < MIN_TEXTS:
        raise CodecError(f"--anchors {p}: {len(lines)} anchor lines; a fit needs at least {MIN_TEXTS}")
    return lines


def anchor_hash(texts: list) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def split_anchors(texts: list) -> tuple:
    """(fit texts, held-out texts) with their indices: ([(i, text)], [(i, text)])."""
    fit = [(i, t) for i, t in enumerate(texts) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    held = [(i, t) for i, t in enumerate(texts) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    return fit, held
