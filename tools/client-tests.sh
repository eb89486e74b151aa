#!/usr/bin/env bash
# The client tests: the dialects called by the real Python clients our users use
# (huggingface_hub, requests, webuiapi), and the playground page in headless Chromium (Playwright
# driving Debian's chromium; screenshot: target/test-output/playground.png). Sets up .venv-clients
# from tests/clients/requirements.txt, builds the binaries (debug; CLIENT_TESTS_PROFILE=release
# for release), starts a fresh database and Redis prefix, `darkroom-api serve` on a free port and
# one CPU worker serving the tiny model as `tiny-sd15`, runs `pytest tests/clients` and then
# tools/schemathesis.sh (the OpenAPI document against the service), then stops everything and
# drops the database.
# Needs the local Postgres and Redis (tools/services.sh) and ONNX Runtime (tools/setup-ort.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# Playwright (the playground's browser test) drives Debian's chromium (.ci/run installs it);
# it must never download a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
venv=.venv-clients
stamp=$venv/.requirements
if [[ ! -x $venv/bin/python ]] || ! cmp -s tests/clients/requirements.txt "$stamp"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
  cp tests/clients/requirements.txt "$stamp"
fi

profile=${CLIENT_TESTS_PROFILE:-debug}
if [[ $profile == release ]]; then
  cargo build --release --locked --quiet -p darkroom-api -p darkroom-worker
else
  cargo build --locked --quiet -p darkroom-api -p darkroom-worker
fi
bin=target/$profile

id=clients_$(date +%s)_$$
pg=${CLIENT_TESTS_POSTGRES:-postgres://postgres@127.0.0.1:5432}
export DATABASE_URL=$pg/darkroom_$id
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export DARKROOM_REDIS_PREFIX=darkroom_$id
export DARKROOM_MODEL_ALIASES=SDXL1.0-base=tiny-sd15,SD1.5=tiny-sd15
logs=$(mktemp -d)
api_pid= worker_pid=

cleanup() {
  [[ -n $worker_pid ]] && kill "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
  [[ -n $api_pid ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"darkroom_$id\" WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "darkroom_$id:*" 2>/dev/null | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
  rm -rf "$logs"
}
trap cleanup EXIT

fail() {
  echo "client-tests: $*" >&2
  echo "--- api log" >&2; tail -n 30 "$logs/api.log" >&2 || true
  echo "--- worker log" >&2; tail -n 30 "$logs/worker.log" >&2 || true
  exit 1
}

"$bin/darkroom-api" migrate >/dev/null
"$bin/darkroom-api" tenant create clients >/dev/null
token=$("$bin/darkroom-api" token issue clients | tail -n 1)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

"$bin/darkroom-api" serve --listen "127.0.0.1:$port" >"$logs/api.log" 2>&1 &
api_pid=$!
"$bin/darkroom-worker" run --ep cpu --model tiny-sd15=tests/fixtures/models/tiny-sd15 >"$logs/worker.log" 2>&1 &
worker_pid=$!

# Wait (up to 60 s) until the API answers and the worker serves the model.
for _ in $(seq 600); do
  live=$(curl -sf "$url/v1/models" -H "Authorization: Bearer $token" 2>/dev/null | python3 -c \
    'import json, sys; print(sum(m["live_workers"] for m in json.load(sys.stdin)["data"] if m["id"] == "tiny-sd15"))' 2>/dev/null || echo 0)
  [[ $live -gt 0 ]] && break
  kill -0 "$api_pid" 2>/dev/null || fail "darkroom-api exited"
  kill -0 "$worker_pid" 2>/dev/null || fail "darkroom-worker exited"
  sleep 0.1
done
[[ ${live:-0} -gt 0 ]] || fail "the worker did not come up within 60 s"

export DARKROOM_URL=$url DARKROOM_TOKEN=$token DARKROOM_MODEL=tiny-sd15
set +e
"$venv/bin/python" -m pytest -q tests/clients "$@"
rc=$?
set -e
# pytest's 5 is "no tests collected": a failure here, not a pass.
[[ $rc -eq 0 ]] || fail "pytest exited with $rc"

# The OpenAPI document against the same service (a second API replica with cost caps);
# DARKROOM_SKIP_SCHEMATHESIS=1 skips it.
if [[ -z ${DARKROOM_SKIP_SCHEMATHESIS:-} ]]; then
  tools/schemathesis.sh "$bin" || fail "schemathesis found failures"
fi
