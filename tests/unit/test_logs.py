"""Process logging: the JSON format, and the redaction net for secrets and row values."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.runtime.connections import libpq_dsn
from streams.runtime.logs import MASK, configure_for, configure_logging, redact, secrets_of
from streams.runtime.settings import load_settings


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_process_and_extras(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging("worker-local_to_remote", "json", stream=out)
    logging.getLogger("platsync.apply").info("batch of %d applied", 12, extra={"route": "local_to_remote"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("platsync.apply").exception("failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "batch of 12 applied" and first["level"] == "INFO"
    assert first["logger"] == "platsync.apply" and first["process"] == "worker-local_to_remote"
    assert first["route"] == "local_to_remote" and first["time"].endswith("Z") and first["pid"] > 0
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc_info"]


def test_text_format_and_bad_format(restore_root: None) -> None:
    out = io.StringIO()
    configure_logging("link", "text", stream=out)
    logging.getLogger("platsync.link").warning("link DOWN")
    assert " WARNING " in out.getvalue() and "link platsync.link - link DOWN" in out.getvalue()
    with pytest.raises(ValueError, match="log_format 'xml': expected one of text, json"):
        configure_logging("link", "xml")


def test_redaction_masks_secrets_and_value_carrying_patterns() -> None:
    pg_error = ('UniqueViolation: duplicate key value violates unique constraint "staff_staff_code_key"\n'
                'DETAIL:  Key (staff_code)=(山田花子-0001) already exists.')
    assert redact(pg_error) == ('UniqueViolation: duplicate key value violates unique constraint '
                                f'"staff_staff_code_key"\nDETAIL: {MASK}')
    not_null = "null value in column \"role\" violates not-null constraint Failing row contains (s1, 山田, null)."
    assert "山田" not in redact(not_null)
    assert redact("Key (id)=(山田) is not present") == f"Key (id)=({MASK}) is not present"
    assert redact("host=x password=pw-123 dbname=meta") == f"host=x password={MASK} dbname=meta"
    assert redact("postgresql+psycopg://platsync:pw-123@127.0.0.1:5/meta") == \
        f"postgresql+psycopg://platsync:{MASK}@127.0.0.1:5/meta"
    assert redact("Authorization: Bearer eyJhbGciOi.x.y") == f"Authorization: Bearer {MASK}"
    assert redact("mail hanako@example.jp now") == f"mail {MASK} now"
    assert redact("[SQL: INSERT ...] [parameters: ('山田',)] (Background") == \
        f"[SQL: INSERT ...] [parameters: {MASK}] (Background"
    assert redact("the secret s3cr3t-value leaked", ["s3cr3t-value"]) == f"the secret {MASK} leaked"
    assert redact("route local_to_remote applied 12 writes (topic platsync.local.meta@7)") == \
        "route local_to_remote applied 12 writes (topic platsync.local.meta@7)"


def test_the_filter_masks_messages_arguments_and_tracebacks(restore_root: None, tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path, pg_password="pw-distinct-1",
                             keycloak_admin_password="kc-distinct-2", credential_keys="k1:QUJDREVGR0g=")
    assert secrets_of(settings) == ["pw-distinct-1", "kc-distinct-2", "k1:QUJDREVGR0g=", "QUJDREVGR0g="]
    assert secrets_of(load_settings(env={}, data_dir=tmp_path)) == []  # defaults are in the source: no secrets
    out = io.StringIO()
    handler = configure_for(settings, "capture-local")
    handler.setStream(out)
    log = logging.getLogger("platsync.capture")
    log.error("connect %s failed", libpq_dsn(settings, "local", "meta"))
    try:
        raise ValueError("DETAIL:  Key (display_name)=(山田花子) already exists. kc-distinct-2")
    except ValueError:
        log.exception("batch failed")
    text = out.getvalue()
    assert "pw-distinct-1" not in text and "kc-distinct-2" not in text and "山田花子" not in text
    assert "password=[redacted]" in text and "ValueError: DETAIL: [redacted]" in text
    assert "dbname=meta" in text and "batch failed" in text
