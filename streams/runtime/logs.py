"""Logging of every PLAT Sync process: one setup function, text or JSON lines, and a redaction net.

Every process entry point (capture runner, worker, mode server, link proxy, Keycloak stand-in)
calls :func:`configure_logging` instead of ``logging.basicConfig``. ``log_format = "json"``
(setting ``log_format``) writes one JSON object per line with the fields ``time`` (ISO 8601
UTC), ``level``, ``logger``, ``message``, ``process`` (e.g. ``capture-local``), ``thread``,
any ``extra={...}`` fields, and ``exc_info`` for exceptions.

What must never be logged (docs/observability.md): PHI (names, document titles and contents,
row values, e-mail addresses, password hashes) and secrets (database and Keycloak passwords,
credential keys, tokens). The log calls themselves log ids, kinds, counts, topics and offsets
only; :class:`RedactingFilter` is defence in depth: it masks the settings' secret values and
the patterns through which row values usually leak (PostgreSQL ``DETAIL:`` lines, DSN passwords,
bearer tokens, e-mail addresses).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from streams.runtime.log_repeats import RepeatSummaryFilter

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(process_name)s %(name)s - %(message)s"
MASK = "[redacted]"
#: A string setting whose name contains one of these holds a secret (see :func:`secrets_of`).
SECRET_WORDS = ("password", "secret", "credential_keys", "token")

#: Patterns that carry values: (regex, replacement).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PostgreSQL details quote the row: "DETAIL:  Key (code)=(value) ...", "Failing row contains (...)".
    (re.compile(r"(?i)\bdetail:.*?(?=\n(?!\s)|$)", re.DOTALL), f"DETAIL: {MASK}"),
    (re.compile(r"Failing row contains \(.*?\)(?=\.|\s|$)", re.DOTALL), f"Failing row contains ({MASK})"),
    (re.compile(r"Key \((?P<cols>[^)]*)\)=\(.*?\)(?= already| is not| conflicts|\.|$)", re.DOTALL),
     rf"Key (\g<cols>)=({MASK})"),
    # SQLAlchemy appends the statement's parameters.
    (re.compile(r"\[parameters: .*?\](?=\s|$)", re.DOTALL), f"[parameters: {MASK}]"),
    # Passwords in DSNs and URLs: "password=...", "user:secret@host".
    (re.compile(r"(?i)(password\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)"), rf"\g<1>{MASK}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]+@"), rf"\g<1>:{MASK}@"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{MASK}"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), MASK),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every value of ``secrets`` and every value-carrying pattern masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets and value-carrying patterns in each record's message and exception text.

    A safety net only: log calls must not pass values in the first place.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so that a secret containing another one is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place (always keeps it)."""
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        record.exc_info = None if record.exc_text else record.exc_info
        return True


class _ProcessNameFilter(logging.Filter):
    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_name = self.process_name
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "process_name"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, process, thread, extras, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": getattr(record, "process_name", ""),
            "pid": record.process,
            "thread": record.threadName,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_text or record.exc_info:
            doc["exc_info"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        if record.stack_info:
            doc["stack_info"] = record.stack_info
        return json.dumps(doc, ensure_ascii=False, default=str)


#: Third-party loggers that log every failed connection attempt themselves (Faust's Kafka client).
CHATTY_LOGGERS = ("aiokafka",)


def configure_logging(process_name: str, log_format: str = "text", level: int = logging.INFO,
                      secrets: Iterable[str] = (), stream: TextIO | None = None,
                      repeat_summary_s: float = 60.0) -> logging.Handler:
    """Set up the root logger of a process (replacing earlier handlers); return its handler.

    ``secrets`` are values to mask wherever they appear (see :func:`secrets_of`). Warnings and errors
    of :data:`CHATTY_LOGGERS` are logged once per kind, then summarised every ``repeat_summary_s``
    (streams/runtime/log_repeats.py). Raises ``ValueError`` for an unknown ``log_format``.
    """
    if log_format not in FORMATS:
        raise ValueError(f"log_format {log_format!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    # Handler filters see records of every logger (a logger's filters would miss its children's).
    handler.addFilter(_ProcessNameFilter(process_name))
    handler.addFilter(RepeatSummaryFilter(CHATTY_LOGGERS, repeat_summary_s))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler


def secrets_of(settings: Any) -> list[str]:
    """The secret values of a :class:`~streams.runtime.settings.Settings`: every string setting whose name
    contains one of :data:`SECRET_WORDS` (passwords, credential keys, tokens), keys split apart.

    A value equal to its setting's default is no secret (it is in the source code) and is left
    alone: masking the default password ``platsync`` would mask every topic name.
    """
    if not dataclasses.is_dataclass(settings):
        return []
    values: list[str] = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if not isinstance(value, str) or not value or value == f.default:
            continue
        if any(word in f.name for word in SECRET_WORDS):
            values.append(value)
            if f.name == "credential_keys":  # "kid:base64key[,kid:base64key...]"
                values += [entry.partition(":")[2].strip() for entry in value.split(",")]
    return [v for v in values if v]


def configure_for(settings: Any, process_name: str) -> logging.Handler:
    """:func:`configure_logging` with the settings' ``log_format`` and secrets (including the
    embedded stack's generated credential keys, ``<data_dir>/secrets/credential.keys``, if present)."""
    secrets = secrets_of(settings)
    try:
        spec = (settings.data_dir / "secrets" / "credential.keys").read_text(encoding="utf-8").strip()
        secrets += [entry.partition(":")[2].strip() for entry in spec.split(",")]
    except (OSError, AttributeError, TypeError):
        pass
    return configure_logging(process_name, getattr(settings, "log_format", "text"), secrets=secrets,
                             repeat_summary_s=getattr(settings, "log_repeat_summary_s", 60.0))
