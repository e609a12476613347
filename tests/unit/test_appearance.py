"""Appearance cues: colour stripes, named colours, the similarity mix, and the reid scoring."""
import numpy as np
import pytest

from camflow.evaluation.reid import rank_scores, split_queries_and_tracks
from camflow.transforms.appearance import (COLOUR_SIZE, canonical_colour, colour_names,
                                           colour_vectors, embedding_inputs, named_colour,
                                           similarity, unit)

BGR = {"red": (0, 0, 220), "blue": (200, 60, 0), "green": (0, 180, 0), "yellow": (0, 220, 230),
       "white": (245, 245, 245), "black": (15, 15, 15), "grey": (128, 128, 128)}


def person(upper: str, lower: str, background=(90, 120, 100)) -> tuple[np.ndarray, np.ndarray]:
    """A 200 x 120 frame with a 40 x 150 'person': upper half one colour, lower half another."""
    image = np.zeros((200, 120, 3), np.uint8)
    image[:] = background
    image[25:100, 40:80] = BGR[upper]
    image[100:175, 40:80] = BGR[lower]
    return image, np.array([[40.0, 25.0, 80.0, 175.0]])


@pytest.mark.parametrize("name", sorted(BGR))
def test_named_colour_of_a_plain_patch(name):
    assert named_colour(np.full((10, 10, 3), BGR[name], np.uint8)) == name


def test_colour_names_of_a_person_and_a_vehicle():
    image, box = person("red", "blue")
    assert colour_names(image, box[0], "person") == {"upper": "red", "lower": "blue"}
    # A vehicle has one body colour, read from its middle (here half red, half blue).
    assert set(colour_names(image, box[0], "car")) == {"body"}
    assert colour_names(image, box[0], "car")["body"] in ("red", "blue")


def test_colour_vectors_are_unit_and_tell_upper_from_lower():
    red_blue, box = person("red", "blue")
    blue_red, _ = person("blue", "red")
    red_blue_again, _ = person("red", "blue", background=(60, 60, 60))
    vectors = colour_vectors(np.concatenate([red_blue, blue_red, red_blue_again], axis=1),
                             np.array([box[0], box[0] + [120, 0, 120, 0], box[0] + [240, 0, 240, 0]]))
    assert vectors.shape == (3, COLOUR_SIZE)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    s = similarity(vectors, None, vectors, None)
    # Same clothes on another background are closer than the same colours swapped.
    assert s[0, 2] > s[0, 1] + 0.3


def test_boxes_too_small_or_outside_give_zero_rows():
    image, _ = person("red", "blue")
    vectors = colour_vectors(image, np.array([[10.0, 10.0, 12.0, 12.0], [500.0, 500.0, 600.0, 700.0]]))
    assert not vectors.any()
    batch, kept = embedding_inputs(image, np.array([[10.0, 10.0, 12.0, 12.0], [40.0, 25.0, 80.0, 175.0]]))
    assert batch.shape == (1, 3, 224, 224) and kept.tolist() == [1]


def test_similarity_mixes_colour_and_embedding():
    colour = unit(np.eye(3, 4))
    embedding = unit(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    mixed = similarity(colour, embedding, colour, embedding, colour_weight=0.5)
    assert mixed[0, 1] == pytest.approx(0.5)  # colours differ, embeddings agree
    assert mixed[0, 2] == pytest.approx(0.0)
    assert similarity(colour, None, colour, embedding)[0, 1] == pytest.approx(0.0)


def test_query_colour_words():
    assert canonical_colour("Dark") == "black" and canonical_colour("gray") == "grey"
    with pytest.raises(ValueError, match="unknown colour 'mauve'"):
        canonical_colour("mauve")


def test_reid_split_and_scores():
    ids = np.array([1, 2, 1, 2, 1, 2, 1, 2, 3, 3])  # person 3 has too few crops
    queries, tracks = split_queries_and_tracks(ids)
    assert sorted(tracks) == [1, 2] and ids[queries].tolist() == [1, 1, 2, 2]
    track_ids = np.array([1, 2])
    similarity_ = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    scores = rank_scores(similarity_, np.array([1, 2, 2, 1]), track_ids)
    # The third query ranks its own track second: rank-1 3/4, mean reciprocal rank 3.5/4.
    assert scores == {"rank1": 0.75, "map": 0.875}
