#!/usr/bin/env bash
# Download the mediapipe 0.10.14 wheel (never installed: only its Selfie Segmentation and Pose .tflite files
# are read) for `python -m bgservice.models.convert` and tests/test_convert_parity.py.
#   tools/fetch_mediapipe.sh [DIR]     DIR defaults to .cache/mediapipe in the repo root (git-ignored)
# Skips the download when the wheel is already there; checks its sha256. Prints the wheel path on stdout
# (pip chatter goes to stderr): W=$(tools/fetch_mediapipe.sh)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="0.10.14"
# sha256 of mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl on PyPI.
# The wheel is cp311 manylinux x86_64: ask for exactly that one, whatever python runs pip.
exec "$repo/tools/fetch_wheel.sh" "mediapipe==$version" "mediapipe-$version" \
    a807328339e7356fda0bb14df12fedbf1d33bdf81649c5f8666b0026b1cc30b4 "${1:-$repo/.cache/mediapipe}" \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
