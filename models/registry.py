"""Typed access to ``models/manifest.yaml``: where each model comes from and lives in the cache.

    from camflow.models import registry
    entry = registry.get("centernet-coco")
    path = registry.model_path("centernet-coco")   # ONNX file in the cache (may not exist yet)
    registry.verify("centernet-coco")               # sha256 check of the cached file
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

MANIFEST_PATH = Path(__file__).with_name("manifest.yaml")
EXTRA_MANIFESTS_ENV = "CAMFLOW_MODEL_MANIFESTS"

CLASS_SETS: dict[str, tuple[str, ...]] = {}


def _class_sets() -> dict[str, tuple[str, ...]]:
    if not CLASS_SETS:
        from camflow.transforms.detections import COCO_CLASSES

        CLASS_SETS["coco80"] = COCO_CLASSES
    return CLASS_SETS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceFile(_Strict):
    path: str
    sha256: str


class NpmSource(_Strict):
    kind: Literal["npm"]
    package: str
    version: str
    tarball: str
    tarball_sha256: str
    files: list[SourceFile]


class FileSource(_Strict):
    """A ready ONNX file supplied by the user (relative paths are relative to the manifest)."""

    kind: Literal["file"]
    path: str
    sha256: str | None = None


class OtherSource(BaseModel):
    """Any other source kind (e.g. ``pypi``); its builder lives elsewhere and reads the extras."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str


Source = Annotated[Union[NpmSource, FileSource, OtherSource], Field(union_mode="left_to_right")]


class Conversion(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    tool: Literal["convert_tfjs"] | str
    entry: str | None = None
    opset: int = 17
    outputs: list[str] = Field(default_factory=list)
    python: str = "3.11"
    requirements: list[str] = Field(default_factory=list)


class Output(_Strict):
    file: str
    sha256: str | None = None
    size: int | None = None


class InputSpec(BaseModel):
    """Known keys are typed; other models may add their own (e.g. dynamic-size text models)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str | None = None
    width: int | Literal["dynamic"] | None = None
    height: int | Literal["dynamic"] | None = None
    batch: int | None = 1  # None: dynamic batch
    layout: Literal["NHWC", "NCHW"] | str = "NCHW"
    colour: Literal["RGB", "BGR"] | str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    resize: Literal["stretch", "letterbox"] | str = "letterbox"
    pad_value: int = 114


class Thresholds(_Strict):
    score: float = 0.35
    nms_iou: float = 0.5
    max_detections: int = 100


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    role: Literal["objects", "faces", "plates", "embeddings", "other"] | str
    description: str = ""
    licence: str
    upstream: str | None = None
    source: Source
    conversion: Conversion | None = None
    output: Output | None = None
    input: InputSpec
    decoder: Literal["centernet-tfjs", "yolov8"] | str
    classes: str | list[str] = "coco80"
    thresholds: Thresholds = Field(default_factory=Thresholds)
    manifest_dir: str = ""  # filled by the loader, for relative file sources

    @field_validator("classes")
    @classmethod
    def _known_class_set(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str) and v not in ("coco80",):
            raise ValueError(f"unknown class set {v!r} (use 'coco80' or an explicit list)")
        return v

    @property
    def class_names(self) -> tuple[str, ...]:
        if isinstance(self.classes, str):
            return _class_sets()[self.classes]
        return tuple(self.classes)

    @property
    def needs_build(self) -> bool:
        return self.source.kind != "file"


class Manifest(_Strict):
    schema_version: int = 1
    models: list[ModelEntry]


def cache_dir() -> Path:
    """``$CAMFLOW_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/camflow``."""
    env = os.environ.get("CAMFLOW_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "camflow"


def _read_manifest(path: Path) -> list[ModelEntry]:
    raw: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    for item in raw.get("models", []):
        item.setdefault("manifest_dir", str(path.resolve().parent))
    return Manifest.model_validate(raw).models


@lru_cache(maxsize=8)
def _load(paths: tuple[str, ...]) -> dict[str, ModelEntry]:
    entries: dict[str, ModelEntry] = {}
    for p in paths:
        for entry in _read_manifest(Path(p)):
            if entry.name in entries:
                raise ValueError(f"model {entry.name!r} defined twice (again in {p})")
            entries[entry.name] = entry
    return entries


def manifest_paths() -> tuple[str, ...]:
    extra = [p for p in os.environ.get(EXTRA_MANIFESTS_ENV, "").split(os.pathsep) if p]
    return (str(MANIFEST_PATH), *extra)


def load_manifest() -> dict[str, ModelEntry]:
    """All models by name: the packaged manifest plus any in ``CAMFLOW_MODEL_MANIFESTS``."""
    return dict(_load(manifest_paths()))


def get(name: str) -> ModelEntry:
    entries = load_manifest()
    if name not in entries:
        raise KeyError(f"unknown model {name!r}; known: {sorted(entries)}")
    return entries[name]


def models_dir(base: Path | None = None) -> Path:
    return (base or cache_dir()) / "models"


def model_path(name: str, base: Path | None = None) -> Path:
    """Where the model's ONNX file is (file sources) or will be after ``build`` (others)."""
    entry = get(name)
    if isinstance(entry.source, FileSource):
        p = Path(os.path.expandvars(entry.source.path)).expanduser()
        return p if p.is_absolute() else Path(entry.manifest_dir) / p
    return models_dir(base) / (entry.output.file if entry.output else f"{entry.name}.onnx")


def build_record_path(name: str, base: Path | None = None) -> Path:
    p = model_path(name, base)
    return p.with_name(p.name + ".build-record.json")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def expected_sha256(name: str, base: Path | None = None) -> str | None:
    entry = get(name)
    if isinstance(entry.source, FileSource):
        return entry.source.sha256
    return entry.output.sha256 if entry.output else None


def verify(name: str, base: Path | None = None) -> bool:
    """True if the model file exists and matches its manifest sha256.

    A file source without a sha256 only has to exist.
    """
    path = model_path(name, base)
    if not path.is_file():
        return False
    expected = expected_sha256(name, base)
    if expected is None:
        return True
    return sha256_file(path) == expected


def list_models(base: Path | None = None) -> list[dict[str, Any]]:
    """One row per model: name, role, decoder, source, path, present, verified."""
    rows = []
    for name, entry in sorted(load_manifest().items()):
        path = model_path(name, base)
        src = entry.source
        rows.append({
            "name": name,
            "role": entry.role,
            "decoder": entry.decoder,
            "source": f"npm:{src.package}@{src.version}" if isinstance(src, NpmSource)
            else f"file:{src.path}" if isinstance(src, FileSource) else src.kind,
            "licence": entry.licence,
            "path": str(path),
            "present": path.is_file(),
            "verified": verify(name, base),
        })
    return rows
