#!/usr/bin/env bash
# The project's test command (README, CI): fetch ONNX Runtime's library if missing, then run
# every test of the workspace against it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-ort.sh
cargo test --workspace --locked "$@"
