"""Face detection + embedding on the real photos in ../shared/data/faces (needs the models)."""
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "faces"
if not (DATA / "labels.csv").exists():
    pytest.skip(f"real face data not found at {DATA}", allow_module_level=True)
pytest.importorskip("dlib", reason="dlib-bin not installed")
pytest.importorskip("faiss", reason="faiss-cpu not installed")


@pytest.fixture(scope="module")
def result():
    from camflow.evaluation.perception import eval_faces

    return eval_faces(DATA, DATA / "labels.csv")


def test_verification_and_identification(result):
    assert result["pairs"] >= 150
    assert result["tar_at_far_1e-3"] >= 0.95
    assert result["eer"] <= 0.05
    assert result["identification_top1"] >= 0.9


def test_two_faces_found_and_told_apart():
    import cv2

    from camflow.core import perception
    finder, embedder = perception.face_detector(), perception.face_embedder()

    image = cv2.imread(str(DATA / "examples__knn_examples__test__obama_and_biden.jpg"))
    faces = finder.detect(image)
    assert len(faces) >= 2  # Biden, Obama (and a child's face at the bottom right)
    assert set(faces.class_name.tolist()) == {"face"}
    assert faces.data["landmarks"].shape == (len(faces), 5, 2)
    faces = faces[np.argsort(-faces.area)[:2]]
    faces = embedder.embed(image, faces)
    emb = faces.data["embedding"]
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert float(emb[0] @ emb[1]) < 0.9  # two different people

    obama = cv2.imread(str(DATA / "tests__test_images__obama.jpg"))
    ref = embedder.embed(obama, finder.detect(obama)).data["embedding"][0]
    sims = emb @ ref
    assert sims.max() > 0.93 and sims.min() < 0.9
