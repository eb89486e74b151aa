#!/usr/bin/env bash
# The project's test command (README, CI): formatting and lints first (cheap, and a habit), then
# fetch ONNX Runtime's library if missing, build, check the Kubernetes manifests
# (tools/check-k8s.sh), run every test of the workspace, then the client tests
# (tools/client-tests.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# rustfmt and clippy ship with rustup's default profile; install them where a minimal one lacks them.
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
tools/setup-ort.sh
# The end-to-end tests run the real binaries: build them first (cargo test alone does not).
cargo build --workspace --locked --bins
# The Kubernetes manifests (deploy/k8s): rendered with kustomize and checked offline, their flags
# against the binaries just built (a few seconds; .venv-k8s is set up on first use, ~30 s).
tools/check-k8s.sh --bin-dir target/debug
cargo test --workspace --locked "$@"
# The dialects through the real Python clients (tests/clients; DARKROOM_SKIP_CLIENT_TESTS=1 skips).
if [[ -z ${DARKROOM_SKIP_CLIENT_TESTS:-} ]]; then
  tools/client-tests.sh
fi
