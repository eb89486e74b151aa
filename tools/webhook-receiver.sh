#!/usr/bin/env bash
# The webhook receiver of the integration tests (tests/webhooks/receiver.py, which verifies every
# delivery with PyPI's `standardwebhooks`). Sets up .venv-webhooks from
# tests/webhooks/requirements.txt on first use (pip, PyPI), then runs the receiver with the
# given arguments (`--port 0`: a free port, printed as `listening on PORT`).
#   tools/webhook-receiver.sh --setup-only    only set up the virtual environment
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-webhooks
requirements=tests/webhooks/requirements.txt
stamp=$venv/.requirements
# Tests run side by side: one sets the environment up while the others wait.
exec 9>"$(dirname "$venv")/.venv-webhooks.lock"
flock 9
if [[ ! -x $venv/bin/python ]] || ! cmp -s "$requirements" "$stamp"; then
  echo "webhook-receiver: setting up $venv (pip: $(grep -E '^[a-z]' "$requirements" | paste -sd ' '))" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
flock -u 9
if [[ ${1:-} == --setup-only ]]; then
  exit 0
fi
exec "$venv/bin/python" -u tests/webhooks/receiver.py "$@"
