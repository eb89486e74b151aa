#!/usr/bin/env bash
# Quick start: set up (ONNX Runtime's library, Postgres and Redis when missing), build, start the
# service — darkroom-api on 127.0.0.1:8080 and one worker serving the bundled tiny model as
# `tiny-sd15` — and generate an image with curl. Processes and logs live in .darkroom/.
#   tools/quickstart.sh         set up, start, generate astronaut.png
#   tools/quickstart.sh stop    stop the API and the worker it started
set -euo pipefail
cd "$(dirname "$0")/.."
state=.darkroom
listen=${DARKROOM_LISTEN:-127.0.0.1:8080}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/darkroom}

stop() {
  for p in worker api; do
    if [ -f "$state/$p.pid" ]; then
      kill "$(cat "$state/$p.pid")" 2>/dev/null || true
      rm -f "$state/$p.pid"
    fi
  done
}
if [ "${1:-}" = stop ]; then stop; echo "stopped"; exit 0; fi

tools/setup-ort.sh
tools/services.sh
cargo build --release --locked -p darkroom-api -p darkroom-worker
api=target/release/darkroom-api
worker=target/release/darkroom-worker
mkdir -p "$state"
stop

$api migrate
$api tenant list | awk 'NR > 1 {print $1}' | grep -qx quickstart || $api tenant create quickstart
[ -s "$state/token" ] || $api token issue quickstart | tail -n 1 > "$state/token"
token=$(cat "$state/token")

nohup $api serve --listen "$listen" > "$state/api.log" 2>&1 &
echo $! > "$state/api.pid"
nohup $worker run --model "tiny-sd15=tests/fixtures/models/tiny-sd15" --ep auto > "$state/worker.log" 2>&1 &
echo $! > "$state/worker.pid"

echo "waiting for the API and the worker..."
for _ in $(seq 1 120); do
  models=$(curl -s -H "Authorization: Bearer $token" "http://$listen/v1/models" || true)
  case "$models" in *'"live_workers":1'*) break ;; esac
  sleep 0.5
done
case "$models" in *'"live_workers":1'*) ;; *) echo "the service did not come up; see $state/api.log and $state/worker.log" >&2; exit 1 ;; esac

set -x
curl -s http://$listen/v1/jobs \
  -H "Authorization: Bearer $token" -H "Content-Type: application/json" -H "Prefer: wait" \
  -d '{"model": "tiny-sd15", "prompt": "a photo of an astronaut riding a horse on mars", "width": 64, "height": 64, "steps": 20, "seed": 42}' \
  -o "$state/job.json"
set +x
url=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["images"][0]["url"])' "$state/job.json")
curl -s -H "Authorization: Bearer $token" "http://$listen$url" -o astronaut.png
echo
echo "astronaut.png written (job $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$state/job.json"))."
echo "The service keeps running (logs in $state/); your token is in $state/token:"
echo "  export TOKEN=\$(cat $state/token)"
echo "Stop it with: tools/quickstart.sh stop"
