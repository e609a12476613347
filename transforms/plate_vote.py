"""One plate result per vehicle, not per frame: the reads of a vehicle track fused by a
character-wise vote (pure Python, no models).

Each read is a plate text with a confidence per character (``PlateText.char_conf``, or the
``char_conf`` column of ``read_plate``'s ``Detections``). Reads of the same length vote
position by position, each character weighted by its confidence; the winning characters must
form a well-formed plate (``plate_text.parse_plate`` without repairs), else the vote falls back
to the reads of the heaviest layout, and at last to the best single read. The read that agrees
best with the fused text (the most confident such read) is named as the evidence, so its crop can
be kept.

    fused = fuse_reads([r1, r2, r3])        # PlateText or None
    fused.text, fused.char_conf, fused.support, fused.evidence

``PlateVote`` keeps the reads of one track as plain data (for operator state) and fuses them on
demand; ``is_confident`` says whether one read alone is sure enough to act on (e.g. a watchlist
alert before the track ends).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .plate_text import PlateText, normalise_text, parse_plate


@dataclass(frozen=True)
class Read:
    """One frame's reading: normalised text, per-character confidences, overall confidence."""

    text: str
    char_conf: tuple[float, ...]
    confidence: float

    @property
    def weight(self) -> float:
        return self.confidence


def _as_read(r: Any) -> Read | None:
    """A ``PlateText``, a ``Read``, a mapping with text / char_conf / confidence, or a tuple
    ``(text, char_conf[, confidence])``; ``char_conf`` may be a comma-separated string."""
    if isinstance(r, Read):
        return r
    if isinstance(r, str):
        r = (r,)
    if isinstance(r, dict):
        text, cc, conf = r.get("text") or r.get("plate_text"), r.get("char_conf"), r.get("confidence")
    elif isinstance(r, (tuple, list)):
        text, cc = r[0], (r[1] if len(r) > 1 else None)
        conf = r[2] if len(r) > 2 else None
    else:
        text, cc, conf = getattr(r, "text", None), getattr(r, "char_conf", None), getattr(r, "confidence", None)
    text = normalise_text(str(text or ""))
    if not text:
        return None
    if isinstance(cc, str):
        cc = [float(x) for x in cc.split(",") if x.strip()]
    cc = [min(1.0, max(0.0, float(x))) for x in (cc or [])]
    if len(cc) != len(text):
        base = 1.0 if conf is None else float(conf)
        cc = [min(1.0, max(0.0, base))] * len(text)
    if conf is None:
        conf = _geomean(cc)
    return Read(text, tuple(cc), min(1.0, max(0.0, float(conf))))


def _geomean(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    return math.exp(sum(math.log(max(v, 1e-6)) for v in values) / len(values))


def _valid(text: str) -> PlateText | None:
    p = parse_plate(text)
    return p if p is not None and p.repairs == 0 and p.text == text else None


def _vote(reads: Sequence[Read]) -> tuple[str, list[float]]:
    """Position-wise weighted vote over reads of one length: (text, per-character confidence
    = share of the vote's weight x the winners' mean confidence)."""
    n = len(reads[0].text)
    text, confs = [], []
    for k in range(n):
        score: dict[str, float] = defaultdict(float)
        members: dict[str, list[float]] = defaultdict(list)
        for r in reads:
            c = r.text[k]
            score[c] += r.char_conf[k]
            members[c].append(r.char_conf[k])
        total = sum(score.values())
        win = max(score, key=lambda c: (score[c], len(members[c])))
        text.append(win)
        share = score[win] / total if total > 0 else 0.0
        confs.append(share * (sum(members[win]) / len(members[win])))
    return "".join(text), confs


def fuse_reads(reads: Iterable[Any], lines: int | None = None) -> PlateText | None:
    """The reads of one vehicle (track) fused into one ``PlateText``, or ``None`` (no read).

    ``support``: reads equal to the fused text; ``evidence``: index (in ``reads``) of the most
    confident of them -- or of the read closest to it when none is equal -- whose crop is the
    evidence; ``box`` is that read's box when it had one."""
    items = list(reads)
    parsed = [(_as_read(r), i) for i, r in enumerate(items)]
    parsed = [(r, i) for r, i in parsed if r is not None]
    if not parsed:
        return None
    # reads of one length vote together; the heaviest length wins
    by_len: dict[int, list[tuple[Read, int]]] = defaultdict(list)
    for r, i in parsed:
        by_len[len(r.text)].append((r, i))
    group = max(by_len.values(), key=lambda g: (sum(r.weight for r, _ in g), len(g)))
    text, confs = _vote([r for r, _ in group])
    plate = _valid(text)
    if plate is None:
        # mixed layouts (e.g. 'LL' and 'LD' series) can vote an impossible plate: the reads
        # of the heaviest layout (digit / letter pattern) alone
        by_pat: dict[str, list[tuple[Read, int]]] = defaultdict(list)
        for r, i in group:
            by_pat["".join("D" if c.isdigit() else "L" for c in r.text)].append((r, i))
        sub = max(by_pat.values(), key=lambda g: (sum(r.weight for r, _ in g), len(g)))
        text, confs = _vote([r for r, _ in sub])
        plate = _valid(text)
    if plate is None:
        # nothing votes a valid plate: the best valid single read
        valid = [(r, i) for r, i in parsed if _valid(r.text) is not None]
        if not valid:
            return None
        r, _ = max(valid, key=lambda ri: ri[0].weight)
        text, confs = r.text, list(r.char_conf)
        plate = _valid(text)
    agree = [(r, i) for r, i in parsed if r.text == text]
    if agree:
        evidence = max(agree, key=lambda ri: ri[0].weight)[1]
    else:
        evidence = max(parsed, key=lambda ri: (sum(a == b for a, b in zip(ri[0].text, text)),
                                                ri[0].weight))[1]
    src = items[evidence]
    plate.char_conf = tuple(round(float(c), 4) for c in confs)
    plate.confidence = _geomean(confs)
    plate.support = len(agree)
    plate.evidence = evidence
    plate.box = getattr(src, "box", None)
    plate.raw = getattr(src, "raw", "") or text
    src_lines = lines or getattr(src, "lines", None)
    if src_lines == 2 and plate.lines != 2:
        from .plate_text import display_text

        plate.lines = 2
        plate.display = display_text(plate.province, plate.series, plate.serial, 2)
    return plate


def is_confident(read: Any, min_char_conf: float = 0.9) -> bool:
    """One read sure enough to act on alone: a well-formed plate (no repair) whose every
    character has at least ``min_char_conf``."""
    r = _as_read(read)
    if r is None or _valid(r.text) is None:
        return False
    if getattr(read, "repairs", 0):
        return False
    return min(r.char_conf) >= min_char_conf


class PlateVote:
    """The reads of one vehicle track as plain data (``state``: a list of
    ``[text, "c1,c2,...", confidence]``), fused on demand. At most ``max_reads`` are kept: the
    most confident."""

    def __init__(self, state: list | None = None, max_reads: int = 16):
        self.max_reads = max_reads
        self.state: list[list] = [list(x) for x in (state or [])]

    def add(self, read: Any) -> None:
        r = _as_read(read)
        if r is None:
            return
        self.state.append([r.text, ",".join(f"{c:.3f}" for c in r.char_conf), round(r.confidence, 4)])
        if len(self.state) > self.max_reads:
            self.state.sort(key=lambda x: -float(x[2]))
            del self.state[self.max_reads:]

    def __len__(self) -> int:
        return len(self.state)

    def result(self) -> PlateText | None:
        return fuse_reads([tuple(x) for x in self.state])
