#!/usr/bin/env bash
# The project's test command (README, CI): fetch ONNX Runtime's library if missing, then run
# every test of the workspace against it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-ort.sh
# The end-to-end tests run the real binaries: build them first (cargo test alone does not).
cargo build --workspace --locked --bins
cargo test --workspace --locked "$@"
