"""Vietnamese licence plate text: format rules, the one OCR-confusion model, and parsing.

Pure Python (no models). ``transforms/plates.py`` reads plates with it, ``transforms/watchlist.py``
matches watchlisted plates with the same confusion model, ``transforms/plate_vote.py`` fuses the
reads of a vehicle track.

Formats (civilian plates, Circular 58/2020 and 24/2023):

* province code: two digits 11-99, except the codes not issued (13, 42, 44, 45, 46, 87, 91, 96);
* series: one letter (cars: ``51F``), two letters (``51LD``; 50 cc motorbikes ``29-AA``),
  a letter and a digit (motorbikes: ``59-X1``) or two letters and a digit (``29-MD1``);
  series letters never include I, J, O, Q, W; ``Đ`` is written ``D``;
* serial: five digits ``123.45`` (current) or four digits ``1234`` (older plates);
* one line (``51F-598.81``) or two lines (``59-S2 447.17``, ``75A 182.83``: the space in the
  display form separates the lines).

Normalised text is ``[0-9A-Z]`` only (``51F59881``).

OCR confusions (``CONFUSION_CLASSES``): glyphs that OCR mistakes for one another on plates.
The plate parser repairs a character read in the wrong class for its position (province and
serial are digits, series letters are letters) with the confusable character of the right
class, cheaper for the most frequent confusions (``LIKELY_CLASSES``) -- or, when the recogniser
gave its own probabilities for the other characters (``CharRead.alts``), with the model's
best character of the right class when that is cheaper. Letter-letter confusions (M/N) cannot
be repaired by the format; the watchlist's fuzzy matching counts every confusion as a cheap
edit.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

# ------------------------------------------------------------------ format rules
UNUSED_PROVINCE_CODES = frozenset({13, 42, 44, 45, 46, 87, 91, 96})
PROVINCE_CODES = frozenset(range(11, 100)) - UNUSED_PROVINCE_CODES
SERIES_LETTERS = frozenset("ABCDEFGHKLMNPRSTUVXYZ")  # no I, J, O, Q, W
DIGITS = frozenset("0123456789")

# ------------------------------------------------------------------ OCR confusions
# One class = glyphs OCR confuses with one another on plates (every pair within a class).
# The order matters for the repair tables below: the first class naming a character wins.
CONFUSION_CLASSES: tuple[str, ...] = (
    "0DOQUC", "8B3", "1ITLJ", "5S", "2Z", "6G", "MN", "4A", "7Y", "UV", "KX", "PR", "EF", "HN",
    "7T", "3E", "VW",
)
# The most frequent of them (the plate reader's earlier repair table): a repair along these
# costs half as much.
LIKELY_CLASSES: tuple[str, ...] = ("0DOQ", "8B", "1ILJ", "5S", "2Z", "6G", "1T")

CONFUSABLE: frozenset[tuple[str, str]] = frozenset(
    (a, b) for cls in CONFUSION_CLASSES for a in cls for b in cls if a != b)
_LIKELY: frozenset[tuple[str, str]] = frozenset(
    (a, b) for cls in LIKELY_CLASSES for a in cls for b in cls if a != b)


def _first_partner(c: str, want) -> str | None:
    for cls in CONFUSION_CLASSES:
        if c in cls:
            for o in cls:
                if o != c and want(o):
                    return o
    return None


# A character read where a digit must be: the digit it most likely is (and the reverse).
TO_DIGIT: dict[str, str] = {c: d for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            if (d := _first_partner(c, str.isdigit)) is not None}
TO_LETTER: dict[str, str] = {c: d for c in "0123456789"
                             if (d := _first_partner(c, lambda o: o in SERIES_LETTERS)) is not None}
# Letters that are never series letters, and the legal letter they are mistaken for.
ILLEGAL_LETTER: dict[str, str] = {c: d for c in "IJOQW"
                                  if (d := _first_partner(c, lambda o: o in SERIES_LETTERS)) is not None}


def confusion_cost(read: str, true: str) -> float | None:
    """Cost of taking ``read`` (as OCR'd) for ``true``: 0 same, 0.5 a likely confusion, 1.0 a
    known one, ``None`` when they are not confusable."""
    if read == true:
        return 0.0
    if (read, true) in _LIKELY:
        return 0.5
    if (read, true) in CONFUSABLE:
        return 1.0
    return None


def substitution_cost(a: str, b: str, cheap: float = 0.5) -> float:
    """Edit cost for fuzzy matching: 0 same, ``cheap`` for any OCR confusion, else 1."""
    if a == b:
        return 0.0
    return cheap if (a, b) in CONFUSABLE else 1.0


def plate_distance(a: str, b: str, cheap: float = 0.5) -> float:
    """Weighted Levenshtein distance: insert/delete 1, substitution 1, OCR confusion ``cheap``."""
    prev = [float(j) for j in range(len(b) + 1)]
    for i, ca in enumerate(a, 1):
        cur = [float(i)] + [0.0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1.0, cur[j - 1] + 1.0, prev[j - 1] + substitution_cost(ca, cb, cheap))
        prev = cur
    return prev[-1]


def canonical_map() -> dict[int, str]:
    """Each character -> one representative of its (merged, overlapping) confusion classes
    (for ``str.translate``): two texts that differ only by confusions map to the same text."""
    parent: dict[str, str] = {}

    def find(c: str) -> str:
        while parent.setdefault(c, c) != c:
            c = parent[c]
        return c

    for cls in CONFUSION_CLASSES:
        for c in cls[1:]:
            a, b = find(cls[0]), find(c)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {ord(c): find(c) for c in parent}


# ------------------------------------------------------------------ text
def normalise_text(text: str) -> str:
    """Upper-case ``[0-9A-Z]`` only; ``Đ``/``đ`` become ``D`` and accents are dropped."""
    if not text:
        return ""
    text = text.replace("Đ", "D").replace("đ", "d").replace("Ð", "D")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^0-9A-Z]", "", text.upper())


@dataclass(frozen=True)
class CharRead:
    """One recognised character: ``char`` (``[0-9A-Z]``, or ``-`` / ``.`` separators), the
    recogniser's probability of it, and optionally its probabilities of other characters at the
    same place (``alts``), which the parser uses to repair it."""

    char: str
    conf: float = 1.0
    alts: Mapping[str, float] | None = None


@dataclass
class PlateText:
    """A reading that fits the Vietnamese plate format."""

    text: str               # normalised, e.g. "59S244717"
    display: str            # e.g. "59-S2 447.17"
    confidence: float       # reading confidence x format plausibility, 0..1
    province: str = ""
    series: str = ""
    serial: str = ""
    lines: int = 1
    repairs: int = 0        # characters changed by confusion repair
    raw: str = ""           # the OCR text it came from
    box: object | None = field(default=None, repr=False)  # [4, 2] corners in the image
    char_conf: tuple[float, ...] = ()   # per character of ``text``, 0..1
    support: int = 1        # a fused track result: how many reads equal it
    evidence: int = -1      # a fused track result: index of the read chosen as evidence

    @property
    def vehicle_type(self) -> str:
        return "motorbike" if self.display[2:3] == "-" else "car"

    @property
    def pattern(self) -> str:
        """The layout class of the text: 'D' digit / 'L' letter per character, e.g. 'DDLDDDDDD'."""
        return "".join("D" if c.isdigit() else "L" for c in self.text)


# Templates: (series pattern, serial length).  'L' series letter, 'D' digit.
SERIES_PATTERNS = ("L", "LL", "LD", "LLD")
SERIAL_LENGTHS = (5, 4)
MAX_REPAIRS = 3  # readings that need more character repairs are rejected
_CONF_DECAY = 0.35  # confidence x exp(-0.35 x repair cost)


def _fit_char(ch: CharRead, want: str) -> tuple[str, float, float, bool] | None:
    """``ch`` placed where ``want`` ('D' digit / 'L' series letter) must be: (char, cost,
    per-character confidence, repaired) or None.

    A repair takes the confusion table's partner of the right class, or -- when the recogniser
    gave its probabilities of other characters here -- its most probable character of the
    right class, whichever is cheaper (cost 0.25 x log(p(read) / p(other)), at least 0.1; its
    confidence: its probability among the characters of that class)."""
    c = ch.char
    legal = str.isdigit if want == "D" else SERIES_LETTERS.__contains__
    if legal(c):
        return c, 0.0, ch.conf, False
    options: dict[str, tuple[float, float]] = {}  # candidate -> (cost, confidence)
    table = TO_DIGIT.get(c) if want == "D" else (ILLEGAL_LETTER.get(c) or TO_LETTER.get(c))
    if table is not None:
        cost = confusion_cost(c, table)
        cost = 1.0 if cost is None else cost
        options[table] = (cost, ch.conf * math.exp(-_CONF_DECAY * cost))
    legal_alts = {o: p for o, p in (ch.alts or {}).items() if legal(o) and p >= 1e-3}
    mass = sum(legal_alts.values())
    for o, p in legal_alts.items():
        cost = max(0.1, 0.25 * math.log(max(ch.conf, p) / p))
        prev = options.get(o)
        if prev is None or cost < prev[0]:
            # confidence: the model's probability of it among the characters allowed here
            options[o] = (cost, p / mass)
    if not options:
        return None
    o, (cost, conf) = min(options.items(), key=lambda kv: kv[1][0])
    return o, cost, conf, True


def _fit(chars: Sequence[CharRead], pattern: str) -> tuple[str, float, int, list[float]] | None:
    """Force ``chars`` into ``pattern``; (text, cost, repairs, per-character confidences)."""
    out, confs, cost, repairs = [], [], 0.0, 0
    for ch, p in zip(chars, pattern):
        r = _fit_char(ch, p)
        if r is None:
            return None
        out.append(r[0])
        cost += r[1]
        confs.append(r[2])
        repairs += r[3]
    return "".join(out), cost, repairs, confs


def display_text(province: str, series: str, serial: str, lines: int) -> str:
    ser = f"{serial[:3]}.{serial[3:]}" if len(serial) == 5 else serial
    motorbike = any(c.isdigit() for c in series)
    if motorbike or (lines == 2 and len(series) >= 2):
        return f"{province}-{series} {ser}"
    if lines == 2:
        return f"{province}{series} {ser}"
    return f"{province}{series}-{ser}"


def _candidates(top, bottom, flat, trim: bool = False) -> Iterable[tuple[list, str, list, float]]:
    """Yield (province+series chars, series pattern, serial chars, extra cost) splits.

    ``trim``: also try dropping one stray character at either end (a bolt, the border).
    """
    if top is not None and bottom is not None and not trim:
        # two lines (or "51F-598.81"): top = province + series, bottom = serial
        for series_pat in SERIES_PATTERNS:
            if len(top) == 2 + len(series_pat) and len(bottom) in SERIAL_LENGTHS:
                yield top, series_pat, bottom, 0.0
    if top is not None and bottom is not None and trim:
        # one stray character at the outer end of either line, the line break kept
        for t2 in (top[1:], top[:-1]) if len(top) > 3 else ():
            for series_pat in SERIES_PATTERNS:
                if len(t2) == 2 + len(series_pat) and len(bottom) in SERIAL_LENGTHS:
                    yield t2, series_pat, bottom, 1.0
        for b2 in (bottom[1:], bottom[:-1]):
            for series_pat in SERIES_PATTERNS:
                if len(top) == 2 + len(series_pat) and len(b2) in SERIAL_LENGTHS:
                    yield top, series_pat, b2, 1.0
    for series_pat in SERIES_PATTERNS:
        for n_serial in SERIAL_LENGTHS:
            if bottom is not None and n_serial not in (len(bottom), len(bottom) - 1):
                continue  # never move characters across an explicit line break / dash
            total = 2 + len(series_pat) + n_serial
            if not trim and len(flat) == total:
                yield flat[:2 + len(series_pat)], series_pat, flat[-n_serial:], 0.25
            elif trim and len(flat) == total + 1:
                yield flat[1:3 + len(series_pat)], series_pat, flat[-n_serial:], 1.0
                yield flat[:2 + len(series_pat)], series_pat, flat[-n_serial - 1:-1], 1.0


def _chars_of(text: str, score: float) -> list[CharRead]:
    """A text line as characters (``Đ`` -> ``D``; separators kept as ``-``)."""
    out = []
    for c in text.replace("Đ", "D").replace("đ", "D").replace("Ð", "D"):
        n = normalise_text(c)
        if n:
            out.extend(CharRead(x, score) for x in n)
        elif c in "-–—":
            out.append(CharRead("-", score))
        elif c in ".,·":
            out.append(CharRead(".", score))
        elif c.isspace():
            out.append(CharRead(" ", score))
    return out


def _strip_seps(chars: Sequence[CharRead]) -> list[CharRead]:
    return [c for c in chars if c.char not in "-. "]


def parse_chars(lines: Sequence[Sequence[CharRead]], score: float = 1.0) -> PlateText | None:
    """Best reading of recognised lines (top to bottom, characters with probabilities) that
    fits a plate format, or ``None``. Two lines: the top is the province and series, the bottom
    the serial. ``score`` multiplies the confidence (e.g. the plate box's)."""
    lines = [list(ln) for ln in lines if _strip_seps(ln)]
    if not lines:
        return None
    stripped = [_strip_seps(ln) for ln in lines]
    flat = [c for ln in stripped for c in ln]
    top = bottom = None
    raw_first = "".join(c.char for c in lines[0]).strip()
    if len(lines) == 2:
        top, bottom = stripped
    elif len(lines) == 1:
        # a one-line reading "51F-598.81": the dash separates the two parts
        chars = [c for c in lines[0] if c.char != " "]
        dashes = [i for i, c in enumerate(chars) if c.char == "-"]
        if dashes:
            i = dashes[0]
            t, b = _strip_seps(chars[:i]), _strip_seps(chars[i + 1:])
            if 3 <= len(t) <= 5 and len(b) >= 3 and all(c.char != "-" for c in chars[i + 1:]):
                top, bottom = t, b
    n_lines = 2 if len(lines) == 2 else 1
    dashed = bool(re.match(r"^\W*\w\w\s*-\s*\w\w", raw_first))  # "29-AA ..." motorbike style
    raw = " ".join("".join(c.char for c in ln).strip() for ln in lines)
    for trim in (False, True):
        best: tuple[float, PlateText] | None = None
        for head, series_pat, serial_raw, extra in _candidates(top, bottom, flat, trim):
            fitted = _fit(head, "DD" + series_pat)
            fitted_serial = _fit(serial_raw, "D" * len(serial_raw))
            if fitted is None or fitted_serial is None:
                continue
            head_txt, c1, r1, conf1 = fitted
            serial, c2, r2, conf2 = fitted_serial
            repairs = r1 + r2
            if repairs > (1 if trim else MAX_REPAIRS):
                continue
            province, series = head_txt[:2], head_txt[2:]
            if int(province) not in PROVINCE_CODES:
                continue
            if len(series) == 3 and series[:2] != "MD":  # two letters + digit: only the MĐ series
                extra += 0.75
            if series_pat == "LL":  # two-letter series are rarer than letter + digit
                extra += 0.3 + (0.25 if len(serial) == 4 else 0.0)
            if dashed and series_pat == "L":  # "29-..." is the motorbike layout
                extra += 0.1
            confs = conf1 + conf2
            used = list(head) + list(serial_raw)
            # the recogniser's confidence in what it read (geometric mean over the characters
            # used; 1 for plain text) x the plausibility of the repairs x a trim penalty
            base = math.exp(sum(math.log(max(c.conf, 1e-6)) for c in used) / len(used))
            cost = c1 + c2 + extra
            conf = float(score) * base * math.exp(-_CONF_DECAY * (c1 + c2)) * (0.9 if trim else 1.0)
            style_lines = 2 if (dashed and len(series) >= 2) else n_lines
            plate = PlateText(
                text=province + series + serial,
                display=display_text(province, series, serial, style_lines),
                confidence=min(1.0, conf), province=province, series=series, serial=serial,
                lines=n_lines, repairs=repairs, raw=raw,
                char_conf=tuple(round(float(c), 4) for c in confs),
            )
            if best is None or cost < best[0] - 1e-9:
                best = (cost, plate)
        if best is not None:
            return best[1]
    return None


def parse_plate(text: str | Sequence[str], score: float = 1.0) -> PlateText | None:
    """Best reading of OCR output that fits a plate format, or ``None``.

    ``text``: one string, or the OCR lines top to bottom (two lines: top is the province and
    series, bottom the serial).  ``score``: the OCR's own confidence (0..1).
    """
    if isinstance(text, str):
        # a space separates the two lines of the display form ("59-S2 447.17")
        raw_lines = [t for t in text.split() if normalise_text(t)]
        if len(raw_lines) > 2:
            raw_lines = [" ".join(raw_lines)]
    else:
        raw_lines = [t for t in text if t and normalise_text(t)]
    if not raw_lines:
        return None
    return parse_chars([_chars_of(t, 1.0) for t in raw_lines], score)


def is_valid_plate(text: str) -> bool:
    """True when ``text`` (any separators) is a well-formed plate with no repair needed."""
    p = parse_plate(text)
    return p is not None and p.repairs == 0 and p.text == normalise_text(text)
