#!/usr/bin/env bash
# Install what is needed, then start both sides (local + remote) of the embedded stack on this machine,
# with a live status until Ctrl-C. Extra arguments go to 'platsync up' (e.g. --detach, --data-dir DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/infra/bootstrap.sh"
# The default data dir is the checkout's .platsync (git-ignored), wherever this is run from.
export PLATSYNC_DATA_DIR="${PLATSYNC_DATA_DIR:-$ROOT/.platsync}"
exec "$ROOT/.venv/bin/platsync" up "$@"
