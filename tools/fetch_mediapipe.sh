#!/usr/bin/env bash
# Download the mediapipe 0.10.14 wheel (never installed: only its Selfie Segmentation and Pose .tflite files
# are read) for `python -m bgservice.models.convert` and tests/test_convert_parity.py.
#   tools/fetch_mediapipe.sh [DIR]     DIR defaults to .cache/mediapipe in the repo root (git-ignored)
# Uses the project's venv python when there is one, else python3. Skips the download when the wheel is
# already there. Prints the wheel path on stdout (pip chatter goes to stderr): W=$(tools/fetch_mediapipe.sh)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$repo/.cache/mediapipe}"
version="0.10.14"
# sha256 of mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl on PyPI
wheel_sha256="a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4"

if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x "$repo/.venv/bin/python" ]]; then
    py="$repo/.venv/bin/python"
else
    py="python3"
fi

mkdir -p "$dir"
shopt -s nullglob
existing=("$dir"/mediapipe-"$version"-*.whl)
if (( ${#existing[@]} == 0 )); then
    # The wheel is cp311 manylinux x86_64: ask for exactly that one, whatever python runs pip.
    args=(download --no-deps --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
          --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 "mediapipe==$version" -d "$dir")
    if "$py" -m pip --version >/dev/null 2>&1; then
        "$py" -m pip "${args[@]}" >&2
    elif command -v uvx >/dev/null 2>&1; then
        uvx --from pip pip "${args[@]}" >&2   # a uv-made venv has no pip
    else
        echo "error: need pip (or uvx) to download mediapipe==$version" >&2
        exit 1
    fi
    existing=("$dir"/mediapipe-"$version"-*.whl)
fi
if (( ${#existing[@]} == 0 )); then
    echo "error: no mediapipe-$version wheel in $dir" >&2
    exit 1
fi
got="$(sha256sum "${existing[0]}" | cut -d' ' -f1)"
if [[ "$got" != "$wheel_sha256" ]]; then
    echo "error: ${existing[0]} has sha256 $got, expected $wheel_sha256" >&2
    exit 1
fi
echo "${existing[0]}"
