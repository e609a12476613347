"""Vietnamese plate format rules and OCR-confusion repair (no models needed)."""
import pytest

from camflow.transforms.plates import (
    PROVINCE_CODES, is_valid_plate, normalise_text, parse_plate,
)


@pytest.mark.parametrize("raw,text,display", [
    ("51F-598.81", "51F59881", "51F-598.81"),            # car, one line
    ("51F59881", "51F59881", "51F-598.81"),
    ("30A-1234", "30A1234", "30A-1234"),                 # old 4-digit serial
    ("51LD-123.45", "51LD12345", "51LD-123.45"),         # two-letter car series
    ("59-S2 447.17", "59S244717", "59-S2 447.17"),       # motorbike
    ("29-Y8 6898", "29Y86898", "29-Y8 6898"),            # motorbike, old 4-digit serial
    ("29-AA 123.45", "29AA12345", "29-AA 123.45"),       # two-letter motorbike series
    ("29-MĐ1 123.45", "29MD112345", "29-MD1 123.45"),    # Đ normalised as D
])
def test_formats(raw, text, display):
    p = parse_plate(raw)
    assert p is not None
    assert (p.text, p.display, p.repairs) == (text, display, 0)
    assert p.confidence == pytest.approx(1.0)


@pytest.mark.parametrize("lines,text,display", [
    (["59-S2", "447.17"], "59S244717", "59-S2 447.17"),
    (["89-E1", "568.90"], "89E156890", "89-E1 568.90"),
    (["75A", "182.83"], "75A18283", "75A 182.83"),       # square two-line car plate
    (["33-R3", "9659"], "33R39659", "33-R3 9659"),
])
def test_two_lines_top_to_bottom(lines, text, display):
    p = parse_plate(lines, score=0.9)
    assert (p.text, p.display, p.lines) == (text, display, 2)
    assert p.confidence == pytest.approx(0.9)


@pytest.mark.parametrize("raw,text,repairs", [
    ("5IF-598.8I", "51F59881", 2),     # I -> 1 in the province and serial
    ("51F-S98.81", "51F59881", 1),     # S -> 5 in the serial
    ("51F-598.B1", "51F59881", 1),     # B -> 8
    ("51F-O69.48", "51F06948", 1),     # O -> 0
    ("51F-G94Z.8", "51F69428", 2),     # G -> 6, Z -> 2
    ("S9-S2 447.17", "59S244717", 1),  # province must be digits
    ("59-52 447.17", "59S244717", 1),  # series letter read as a digit: 5 -> S
    ("59-82 447.17", "59B244717", 1),  # 8 -> B
    ("59-V1 B91.58", "59V189158", 1),
    ("30-O1 123.45", "30D112345", 1),  # O is never a series letter: D
    ("5lF-598.81", "51F59881", 1),     # lower-case l
])
def test_confusion_repair_by_position(raw, text, repairs):
    p = parse_plate(raw)
    assert p is not None and p.text == text and p.repairs == repairs
    assert p.confidence < 1.0


def test_letter_confusions_are_not_repaired():
    # M and N are both legal series letters: the format cannot tell them apart
    assert parse_plate(["59-N1", "973.72"]).text == "59N197372"


@pytest.mark.parametrize("raw", [
    "", "---", "ABCDEFG",
    "995.24",               # serial only (top line lost)
    "13A-123.45",           # province 13 is not issued
    "42A-123.45", "96C-12345",
    "10A-123.45",           # below 11
    "51F-123",              # serial too short
    "51F-1234567",          # serial too long
    "51FFFF-123.45",        # series too long
])
def test_invalid(raw):
    assert parse_plate(raw) is None


def test_province_codes():
    assert 11 in PROVINCE_CODES and 99 in PROVINCE_CODES
    assert not {10, 13, 42, 44, 45, 46, 87, 91, 96} & PROVINCE_CODES
    assert {29, 30, 51, 59, 75, 89} <= PROVINCE_CODES


def test_normalise_text():
    assert normalise_text("51F-598.81") == "51F59881"
    assert normalise_text("29-MĐ1 123.45") == "29MD112345"
    assert normalise_text("đ") == "D"
    assert normalise_text(" 59-s2\n447.17 ") == "59S244717"


def test_is_valid_plate():
    assert is_valid_plate("59-S2 447.17")
    assert not is_valid_plate("59-52 447.17")   # needs a repair
    assert not is_valid_plate("13A-123.45")


def test_vehicle_type():
    assert parse_plate("51F-598.81").vehicle_type == "car"
    assert parse_plate(["59-S2", "447.17"]).vehicle_type == "motorbike"


def test_one_confusion_model_for_reader_and_watchlist():
    from camflow.transforms import plate_text, watchlist
    from camflow.transforms.plate_text import CONFUSABLE, ILLEGAL_LETTER, TO_DIGIT, TO_LETTER

    # the reader's repairs are confusions of the one table
    for table in (TO_DIGIT, TO_LETTER, ILLEGAL_LETTER):
        assert all((read, true) in CONFUSABLE for read, true in table.items())
    # the watchlist's fuzzy matching uses the same table
    assert watchlist.plate_distance is plate_text.plate_distance
    for a, b in ("MN", "UV", "KX", "PR", "EF", "HN", "0D", "8B", "7T"):
        assert watchlist.plate_distance(a, b) == 0.5
    # letter-letter confusions are cheap edits for the watchlist, never format repairs
    assert parse_plate("59-N1 973.72").text == "59N197372"
