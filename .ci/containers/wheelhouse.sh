#!/usr/bin/env bash
# Fills .ci/containers/wheelhouse/ with wheels of everything the images install (kfp-ct's dependencies and the
# serving, tuning and monitoring extras, plus setuptools and wheel to build kfp-ct itself), built on the host with
# pip, so the image builds install with `--no-index` and need no network inside the container.
#
# The wheels must suit the images' Python (CPython 3.11, glibc Linux, this machine's architecture): so this runs
# with a host Python 3.11 on Linux, as `make install` does. kfp-ct's own wheel is left out: the images build it
# from the source in the build context.
#
# `gpu` fills .ci/containers/wheelhouse-gpu/ for Dockerfile.gpu instead: the same plus gpu-requirements.txt (the CUDA
# builds of torch and TensorFlow, several GB).
#
# usage: wheelhouse.sh [PYTHON] [gpu]    (default .venv/bin/python)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${1:-$ROOT/.venv/bin/python}"
case "${2:-}" in
    "") OUT="$ROOT/.ci/containers/wheelhouse"; gpu=0 ;;
    gpu) OUT="$ROOT/.ci/containers/wheelhouse-gpu"; gpu=1 ;;
    *) echo "usage: $0 [PYTHON] [gpu]" >&2; exit 2 ;;
esac

"$PYTHON" - <<'PY'
import platform, sys
if sys.version_info[:2] != (3, 11) or platform.system() != "Linux":
    sys.exit(f"wheelhouse.sh needs CPython 3.11 on Linux to build wheels for the images (found {platform.python_version()}"
             f" on {platform.system()}); leave the wheelhouse empty and the build installs from PyPI instead")
PY
cd "$ROOT"
reqs="$(mktemp)"; trap 'rm -f "$reqs"' EXIT
mkdir -p "$OUT"
"$PYTHON" .ci/containers/requirements.py setup.cfg serving,tuning,monitoring > "$reqs"
echo "setuptools>=68" >> "$reqs"; echo "wheel" >> "$reqs"
[ "$gpu" = 0 ] || cat .ci/containers/gpu-requirements.txt >> "$reqs"
find "$OUT" -name '*.whl' -delete
# Only PyPI (plus any index the user configured): machine-local find-links may hold builds for other targets (a +cpu
# torch, which would win over PyPI's CUDA build). An empty PIP_FIND_LINKS does not override a find-links that pip's
# configuration files set; the (just emptied) output folder does.
log="$OUT/.pip.log"
if ! PIP_FIND_LINKS="$OUT" "$PYTHON" -m pip wheel --progress-bar off -w "$OUT" -c constraints.txt -r "$reqs" > "$log" 2>&1; then
    grep -v "is ignored: it is neither" "$log" | tail -30 >&2; echo "pip wheel failed (log: $log)" >&2; exit 1
fi
echo "wheelhouse: $(find "$OUT" -name '*.whl' | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT"
