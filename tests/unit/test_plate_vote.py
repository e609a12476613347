"""The track vote: reads of one vehicle's frames fused character by character."""
import pytest

from camflow.transforms.plate_text import PlateText, parse_plate
from camflow.transforms.plate_vote import PlateVote, fuse_reads, is_confident


def read(display, char_conf=None, confidence=None):
    p = parse_plate(display)
    p.char_conf = tuple(char_conf or [0.9] * len(p.text))
    if confidence is not None:
        p.confidence = confidence
    return p


def test_the_issue_example():
    fused = fuse_reads([read("51F-123.45"), read("51F-128.45"), read("51E-123.45")])
    assert fused.text == "51F12345" and fused.display == "51F-123.45"
    assert fused.support == 1 and fused.evidence == 0
    assert len(fused.char_conf) == 8
    assert fused.char_conf[2] < fused.char_conf[0]   # F won 2 of 3: less sure than the 5
    assert fused.char_conf[5] < fused.char_conf[0]


def test_weighted_by_character_confidence():
    # one sure read outweighs two unsure ones at the disputed position
    sure = read("59-S2 447.17", [0.99] * 4 + [0.99] + [0.99] * 4)
    unsure = [read("59-S2 447.11", [0.99] * 8 + [0.2]) for _ in range(2)]
    fused = fuse_reads([unsure[0], sure, unsure[1]])
    assert fused.text == "59S244717" and fused.evidence == 1


def test_a_single_read_and_none():
    assert fuse_reads([]) is None
    assert fuse_reads(["not a plate"]) is None
    one = fuse_reads([("51F59881", "0.9,0.9,0.8,0.9,0.9,0.9,0.9,0.9", 0.88)])
    assert one.text == "51F59881" and one.support == 1
    assert one.char_conf[2] == pytest.approx(0.8)


def test_the_vote_is_grammar_checked():
    # 'LL' and 'LD' series reads of one plate: the letter+digit layout has more weight, and a
    # mixed vote that is no plate falls back to one layout
    reads = [read("59-H1 354.60"), read("59-H1 354.60"), read("59-HT 354.60", confidence=0.5)]
    assert fuse_reads(reads).text == "59H135460"
    # lengths differ: the heavier length votes
    assert fuse_reads([read("30A-123.45"), read("30A-1234"), read("30A-123.45")]).text == "30A12345"


def test_char_conf_strings_from_detections_and_state():
    vote = PlateVote()
    vote.add(("51F12345", "0.900,0.900,0.900,0.900,0.900,0.900,0.900,0.900", 0.9))
    vote.add(("51F12845", "0.900,0.900,0.900,0.900,0.900,0.300,0.900,0.900", 0.8))
    vote.add(("51F12345", "0.800,0.800,0.800,0.800,0.800,0.800,0.800,0.800", 0.8))
    again = PlateVote(vote.state)       # plain data: survives operator state
    assert again.result().text == "51F12345" and again.result().support == 2


def test_confident_single_read():
    assert is_confident(read("51F-598.81", [0.97] * 8))
    assert not is_confident(read("51F-598.81", [0.97] * 7 + [0.5]))
    repaired = parse_plate("51F-S98.81")             # needed a repair
    repaired.char_conf = (1.0,) * 8
    assert not is_confident(repaired)
    assert isinstance(fuse_reads([read("51F-598.81")]), PlateText)
