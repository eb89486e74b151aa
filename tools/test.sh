#!/usr/bin/env bash
# The project's test command (README, CI): fetch ONNX Runtime's library if missing, then run
# every test of the workspace against it, then the client tests (tools/client-tests.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-ort.sh
# The end-to-end tests run the real binaries: build them first (cargo test alone does not).
cargo build --workspace --locked --bins
cargo test --workspace --locked "$@"
# The dialects through the real Python clients (tests/clients; DARKROOM_SKIP_CLIENT_TESTS=1 skips).
if [[ -z ${DARKROOM_SKIP_CLIENT_TESTS:-} ]]; then
  tools/client-tests.sh
fi
