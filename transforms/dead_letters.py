"""The one builder of dead-letter records (the ``DeadLetter`` contract), and credential redaction.

Every stage that refuses an input hands it here, so every dead letter obeys the same bounds:

- the payload (the original record) is kept up to ``MAX_PAYLOAD_BYTES``; a longer one is cut
  and the message says how long it was and its sha256, so the original can still be matched
  (a record near the topic's size limit would otherwise make a dead letter that cannot be
  written either, and the job would fail on it forever);
- message, reason, stage, topic and camera id are text of bounded length, valid UTF-8, with
  credentials in URLs (``scheme://user:password@host``) and ``password=...`` pairs redacted;
- ``time_ms`` is the wall-clock time of the rejection.

Pure: no Kafka, no Flink; the job encodes the dict with ``AvroCodec("DeadLetter")``.
"""
from __future__ import annotations

import hashlib
import re
import time
from typing import Any

# Kafka's default max.message.bytes is 1 MiB; a dead letter must fit with room to spare.
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_MESSAGE_CHARS = 2_000
MAX_FIELD_CHARS = 256

# scheme://user:password@host -> scheme://user:***@host ; scheme://token@host -> scheme://***@host
# Bounded repetitions: the patterns run over hostile text (a 100 KB camera id), and an
# unbounded scheme or user-info made them quadratic.
_URL_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}://)(?P<userinfo>[^\s/'\"<>]{1,512})@")
# password=..., passwd: ..., secret=..., token=... (query strings, JAAS, libpq key=value)
_SECRET_PAIR = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|token|access_token|sasl\.password|"
    r"aws_secret_access_key|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token)"
    r"[ \t]{0,8}[=:][ \t]{0,8})"
    r"(?:\"(?:[^\"\\]|\\.){0,4096}\"|'[^']{0,4096}'|[^\s&;,\"']{1,4096})",
    re.IGNORECASE)


def _redact_userinfo(match: re.Match) -> str:
    userinfo = match.group("userinfo")
    user, sep, _ = userinfo.partition(":")
    return f"{match.group('scheme')}{user + ':***' if sep else '***'}@"


def redact(text: Any) -> str:
    """``text`` (anything; ``str()`` is taken) with credentials masked: the user-info password
    of every URL (the whole user-info when it has no ``:``, a bearer token) and the value of
    ``password=``/``secret=``/``token=``-like pairs. Used for every log line and error message
    that can hold a camera, store, registry or broker URL."""
    text = str(text)
    text = _URL_USERINFO.sub(_redact_userinfo, text)
    return _SECRET_PAIR.sub(lambda m: f"{m.group('key')}***", text)


def _text(value: Any, limit: int) -> str:
    """Bounded, encodable text: surrogates (undecodable file names) become escapes."""
    text = str(value)
    if len(text) > 64 * limit:  # redaction is linear, but need not read megabytes
        text = text[: 64 * limit]
    text = redact(text)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        text = text[: limit - 25] + f"... [{len(text) - limit + 25} chars cut]"
    return text


def dead_letter(reason: str, message: str, stage: str, source_topic: str,
                payload: bytes | bytearray | memoryview | str | None,
                camera_id: str | None = None, *, time_ms: int | None = None,
                max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> dict:
    """A ``DeadLetter`` record (dict) for an input refused at ``stage``; never raises on the
    content of its arguments, so building a dead letter cannot itself fail the task."""
    if payload is None:
        data = b""
    elif isinstance(payload, str):
        data = payload.encode("utf-8", "backslashreplace")
    else:
        data = bytes(payload)
    message = _text(message, MAX_MESSAGE_CHARS)
    if len(data) > max_payload_bytes:
        digest = hashlib.sha256(data).hexdigest()
        note = (f" [payload cut: first {max_payload_bytes} of {len(data)} bytes kept, "
                f"sha256 {digest}]")
        message = message[: MAX_MESSAGE_CHARS - len(note)] + note
        data = data[:max_payload_bytes]
    return {
        "reason": _text(reason or "unknown", 64),
        "message": message,
        "stage": _text(stage, 64),
        "source_topic": _text(source_topic, MAX_FIELD_CHARS),
        "camera_id": None if camera_id is None else _text(camera_id, MAX_FIELD_CHARS),
        "payload": data,
        "time_ms": int(time.time() * 1000) if time_ms is None else int(time_ms),
    }
