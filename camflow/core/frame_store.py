"""Claim check for frames: the sampler puts each JPEG in a frame store and publishes only its
reference (``FrameSample.jpeg_ref``); the job reads the bytes where it decodes them.

Why: a 960-px JPEG is 50-150 KB. Carried inline it is copied through every hop of the job
before the keyed analysis (Kafka fetch, the Python admit step and back, the keyed exchange,
the Python analysis). With 2 TaskManagers on 2 cores those copies made parallelism 2 slower
than 1; claim-checked, it is faster (bench/README.md). A reference is ~80 bytes.

Stores, by URL:
- ``file:///dev/shm/camflow-frames``: a directory every TaskManager can read (a tmpfs on one
  machine, or a shared mount); ``prune`` deletes frames past retention.
- ``s3://bucket/prefix``: any S3 API (MinIO, Ceph, AWS); ``endpoint_url`` for non-AWS.
  Retention is the bucket's lifecycle rule.

A frame that is not in the store (expired, never written) is ``None``: the job dead-letters it
as ``missing_image``. A reference outside the store (another directory, another bucket) is
refused the same way, so a hostile record cannot make the job read arbitrary files. A store
that cannot be reached raises: a transient outage fails the task, which Flink restarts from
its checkpoint, rather than dead-lettering every frame.

What a reference may name is checked before anything is opened: a file store reads only a
regular file inside its root (``O_NONBLOCK``: a FIFO planted in the store cannot block the
read; a directory, device or socket is refused), at most ``max_bytes`` of it; an S3 store reads
only keys under its prefix, without ``.``/``..`` segments. Errors are split in two: a
reference that can never be served (malformed, outside the store, not a regular file, too
large, refused by S3 for that key) raises ``FrameRefError`` -- the record's fault, a dead
letter (its ``reason_code`` says which) -- while anything that may pass (I/O errors, timeouts,
throttling, expired credentials, a missing bucket) propagates, so the task restarts.

A file store's root is the sampler's and the job's private directory: created 0700 with
frames 0600 (0640 when the operator made the root group-readable); a root owned by another
user is refused (on ``/dev/shm`` anyone could have created it first to read or plant frames).
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlparse

# A read is always bounded, also when the caller gives no limit (the job passes its
# max_jpeg_bytes); no camera frame comes near this.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_REF_CHARS = 2048
# errno values that say "this reference can never be read" (the record's fault); any other
# OSError (EIO, ESTALE, ETIMEDOUT, EMFILE, ENOMEM, ...) may pass and propagates.
_PERMANENT_ERRNOS = frozenset({errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP,
                               errno.EACCES, errno.EPERM, errno.ENXIO, errno.EINVAL,
                               errno.ENODEV, errno.EOPNOTSUPP})
# S3 error codes that concern one key (permanent for that record) ...
_S3_KEY_ERRORS = frozenset({"AccessDenied", "InvalidArgument", "KeyTooLongError",
                            "InvalidObjectState", "InvalidRequest", "InvalidURI",
                            "InvalidRange", "MethodNotAllowed", "ObjectNotInActiveTierError",
                            "InvalidObjectName", "400", "403", "405", "411", "416"})
# ... and those that concern every key (credentials, bucket, clock): transient or a deployment
# fault, never a reason to dead-letter one frame.
_S3_STORE_ERRORS = frozenset({"ExpiredToken", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                              "InvalidToken", "TokenRefreshRequired", "RequestTimeTooSkewed",
                              "NoSuchBucket", "AllAccessDisabled", "AccountProblem",
                              "InvalidSecurity", "MissingSecurityHeader",
                              "AuthorizationHeaderMalformed"})


class FrameRefError(ValueError):
    """A reference this store can never serve: malformed, outside the store, not a regular
    file, too large, or refused by the store for that key. ``reason_code`` is the dead-letter
    reason (``missing_image`` or ``oversize_frame``)."""

    def __init__(self, message: str, reason_code: str = "missing_image"):
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message, self.reason_code))


class FrameStoreError(PermissionError):
    """The store itself is unusable (e.g. its root belongs to another user)."""


def frame_key(camera_id: str, capture_ms: int, sequence: int) -> str:
    """Store key of one frame: per camera, ordered by capture time, unique per sequence."""
    safe_camera = "".join(c if c.isalnum() or c in "-_." else "_" for c in camera_id)
    return f"{safe_camera}/{capture_ms:013d}-{sequence}.jpg"


def _captured_ms(name: str) -> int | None:
    """The capture time in a frame's file name (``frame_key``), None for any other name."""
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() and name.endswith(".jpg") else None


def _short(ref: str, limit: int = 200) -> str:
    return ref if len(ref) <= limit else ref[:limit] + f"...[{len(ref)} chars]"


def _check_ref_text(ref) -> str:
    if not isinstance(ref, str):
        raise FrameRefError(f"jpeg_ref is {type(ref).__name__}, not a string")
    if len(ref) > MAX_REF_CHARS:
        raise FrameRefError(f"jpeg_ref of {len(ref)} chars (limit {MAX_REF_CHARS}): "
                            f"{_short(ref)!r}")
    if any(ord(c) < 0x20 or c == "\x7f" for c in ref):
        raise FrameRefError(f"jpeg_ref {_short(ref)!r} holds control characters")
    return ref


def file_url_path(url: str) -> str:
    """The file-system path of a ``file://`` URL (percent-decoded, as ``Path.as_uri`` encodes
    it) or of a plain path."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return url
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"file URL {url!r} names host {parsed.netloc!r}")
    return unquote(parsed.path, errors="strict")


class FileFrameStore:
    """Frames as files under one root directory (tmpfs or a shared mount), private to the
    user that runs the sampler and the job."""

    def __init__(self, root: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self._root_checked = False

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def _check_root(self, create: bool) -> bool:
        """The root is ours (or root's) and not writable by others; created 0700 when
        ``create``. Group/other write and other read bits of a root we own are dropped.
        False: the root does not exist (and was not to be created)."""
        if self._root_checked:
            return True
        if create:
            try:
                os.makedirs(self.root, mode=0o700, exist_ok=True)
            except FileExistsError:
                pass
        try:
            info = os.stat(self.root)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(info.st_mode):
            raise FrameStoreError(f"frame store root {self.root} is not a directory")
        euid = os.geteuid()
        if info.st_uid not in (euid, 0):
            raise FrameStoreError(
                f"frame store root {self.root} belongs to uid {info.st_uid}, not to this user "
                f"(uid {euid}): someone else may read or plant frames there; remove it or "
                "choose another frame_store.url")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o027:
            if info.st_uid != euid:
                raise FrameStoreError(f"frame store root {self.root} is open to others "
                                      f"(mode {mode:o}) and not this user's to tighten")
            # Open to everyone (what earlier versions created: 0755): private again. Only a
            # group-writable bit on an otherwise closed root is the operator's group setup.
            os.chmod(self.root, 0o700 if mode & 0o007 else mode & ~0o020)
            info = os.stat(self.root)
        self._file_mode = 0o640 if stat.S_IMODE(info.st_mode) & 0o040 else 0o600
        self._root_checked = True
        return True

    def put(self, camera_id: str, capture_ms: int, sequence: int, jpeg: bytes) -> str:
        return self.put_object(frame_key(camera_id, capture_ms, sequence), jpeg)

    def put_object(self, key: str, data: bytes, content_type: str = "image/jpeg") -> str:
        """Writes ``data`` at ``key`` (``camera/name``, made by this module or the evidence
        store) atomically, replacing what was there; returns its reference."""
        self._check_root(create=True)
        path = self.root / key
        path.parent.mkdir(mode=0o700 if self._file_mode == 0o600 else 0o750, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     self._file_mode)
        try:
            os.fchmod(fd, self._file_mode)  # a leftover .part keeps its old mode otherwise
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(partial, path)  # readers never see half a frame
        return path.as_uri()

    def frames_between(self, camera_id: str, start_ms: int, end_ms: int) -> list[tuple[int, str]]:
        """``(capture_ms, ref)`` of the camera's frames captured in ``[start_ms, end_ms]``, in
        capture order (what a clip around an alert is made of)."""
        if not self._check_root(create=False):
            return []
        folder = self.root / frame_key(camera_id, 0, 0).split("/", 1)[0]
        found = []
        for path in folder.glob("*.jpg"):
            captured = _captured_ms(path.name)
            if captured is not None and start_ms <= captured <= end_ms:
                found.append((captured, path.as_uri()))
        return sorted(found)

    def _path(self, ref: str) -> Path:
        _check_ref_text(ref)
        parsed = urlparse(ref)
        if parsed.scheme != "file" or parsed.query or parsed.fragment:
            raise FrameRefError(f"jpeg_ref {_short(ref)!r} is not a file:// reference of {self.url}")
        try:
            local = file_url_path(ref)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FrameRefError(f"jpeg_ref {_short(ref)!r}: {exc}") from None
        if "\x00" in local:
            raise FrameRefError(f"jpeg_ref {_short(ref)!r} holds a NUL byte")
        try:
            path = Path(local).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # symlink loops, odd names
            raise FrameRefError(f"jpeg_ref {_short(ref)!r}: {exc}") from None
        if not path.is_relative_to(self.root) or path == self.root:
            raise FrameRefError(f"jpeg_ref {_short(ref)!r} is outside the frame store {self.url}")
        return path

    def get(self, ref: str, max_bytes: int | None = None) -> bytes | None:
        """The frame's bytes; None when it is not there (expired, never written).

        Raises ``FrameRefError`` for a reference that can never be read (see the module
        docstring), ``FrameStoreError`` for a root that is not this user's; other ``OSError``
        (I/O, stale handles) propagate as transient."""
        path = self._path(ref)
        limit = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        if not self._check_root(create=False):
            return None
        try:
            # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
                         | getattr(os, "O_NOCTTY", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in _PERMANENT_ERRNOS:
                raise FrameRefError(f"jpeg_ref {_short(ref)!r}: {exc.strerror}") from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FrameRefError(f"jpeg_ref {_short(ref)!r} is not a regular file")
            if info.st_size > limit:
                raise FrameRefError(f"jpeg_ref {_short(ref)!r}: {info.st_size} bytes, limit "
                                    f"{limit} bytes", "oversize_frame")
            chunks, total = [], 0
            while True:  # the file may grow while it is read: never past the limit
                chunk = os.read(fd, min(1 << 20, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise FrameRefError(f"jpeg_ref {_short(ref)!r}: over {limit} bytes",
                                        "oversize_frame")
            return b"".join(chunks)
        except OSError as exc:
            if exc.errno in _PERMANENT_ERRNOS:
                raise FrameRefError(f"jpeg_ref {_short(ref)!r}: {exc.strerror}") from None
            raise
        finally:
            os.close(fd)

    def prune(self, older_than_ms: int) -> int:
        """Deletes frames captured before ``older_than_ms``; returns how many."""
        if not self._check_root(create=False):
            return 0
        removed = 0
        for path in self.root.glob("*/*.jpg"):
            captured = _captured_ms(path.name)
            if captured is not None and captured < older_than_ms:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


class S3FrameStore:
    """Frames as objects under ``s3://bucket/prefix`` (boto3; credentials from the usual
    AWS environment or files)."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, client=None,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.max_bytes = max_bytes
        if client is None:
            import boto3
            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, camera_id: str, capture_ms: int, sequence: int, jpeg: bytes) -> str:
        return self.put_object(frame_key(camera_id, capture_ms, sequence), jpeg)

    def put_object(self, key: str, data: bytes, content_type: str = "image/jpeg") -> str:
        key = self._key(key)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        return f"s3://{self.bucket}/{key}"

    def frames_between(self, camera_id: str, start_ms: int, end_ms: int) -> list[tuple[int, str]]:
        """``(capture_ms, ref)`` of the camera's frames captured in ``[start_ms, end_ms]``."""
        folder = self._key(frame_key(camera_id, 0, 0).split("/", 1)[0]) + "/"
        # Keys sort by capture time (zero-padded): start listing just before start_ms.
        start_after = f"{folder}{max(0, start_ms - 1):013d}-~"
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder, StartAfter=start_after):
            for item in page.get("Contents", []):
                captured = _captured_ms(item["Key"].rsplit("/", 1)[-1])
                if captured is None:
                    continue
                if captured > end_ms:
                    return found
                if captured >= start_ms:
                    found.append((captured, f"s3://{self.bucket}/{item['Key']}"))
        return found

    def _object_key(self, ref: str) -> str:
        _check_ref_text(ref)
        parsed = urlparse(ref)
        key = parsed.path.lstrip("/")
        in_prefix = key.startswith(self.prefix + "/") if self.prefix else True
        if (parsed.scheme != "s3" or parsed.netloc != self.bucket or not in_prefix
                or parsed.query or parsed.fragment):
            raise FrameRefError(f"jpeg_ref {_short(ref)!r} is outside the frame store {self.url}")
        if not key or any(part in ("", ".", "..") for part in key.split("/")):
            raise FrameRefError(f"jpeg_ref {_short(ref)!r}: empty, '.' or '..' path segment")
        if len(key.encode("utf-8", "surrogatepass")) > 1024:
            raise FrameRefError(f"jpeg_ref {_short(ref)!r}: key over S3's 1024 bytes")
        return key

    def get(self, ref: str, max_bytes: int | None = None) -> bytes | None:
        """The frame's bytes; None when the key does not exist. ``FrameRefError`` when S3
        refuses this key (403/400-class errors about the key, too large); credential, bucket,
        throttling, server and network errors propagate (transient or deployment-wide)."""
        from botocore.exceptions import ClientError, ParamValidationError

        key = self._object_key(ref)
        limit = self.max_bytes if max_bytes is None else min(max_bytes, self.max_bytes)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ParamValidationError as exc:
            raise FrameRefError(f"jpeg_ref {_short(ref)!r}: {exc}") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket"):
                return None
            if code not in _S3_STORE_ERRORS and (code in _S3_KEY_ERRORS or status in (400, 403)):
                raise FrameRefError(f"jpeg_ref {_short(ref)!r}: S3 refuses it ({code or status})") \
                    from None
            raise
        body = response["Body"]
        try:
            size = response.get("ContentLength")
            if size is not None and size > limit:
                raise FrameRefError(f"jpeg_ref {_short(ref)!r}: {size} bytes, limit {limit} bytes",
                                    "oversize_frame")
            data = body.read(limit + 1)
            if len(data) > limit:
                raise FrameRefError(f"jpeg_ref {_short(ref)!r}: over {limit} bytes", "oversize_frame")
            return data
        finally:
            body.close()


def open_frame_store(url: str, endpoint_url: str | None = None):
    """The store behind ``url``: ``file:///path`` (or a plain path) or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3FrameStore(parsed.netloc, parsed.path, endpoint_url=endpoint_url)
    if parsed.scheme in ("file", ""):
        return FileFrameStore(file_url_path(url))
    raise ValueError(f"frame store {url!r}: use file:///path or s3://bucket/prefix")



def configured_store(config):
    """The deployment's store (``frame_store`` in the config), or None: JPEGs travel inline."""
    if config.frame_store is None:
        return None
    return open_frame_store(config.frame_store.url, config.frame_store.endpoint_url)
