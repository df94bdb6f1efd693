#!/usr/bin/env bash
# `make bench`: see bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python bench/bench.py "$@"
