#!/usr/bin/env bash
# Install what is needed, then run the whole test suite (lint, contract check, unit and end-to-end tests
# against real PostgreSQL, broker, Debezium and Faust processes). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/infra/bootstrap.sh" test
cd "$ROOT"
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] pytest"
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "[test] pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
