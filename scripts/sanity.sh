#!/usr/bin/env bash
# ansible-test sanity and units. ansible-test wants the collection at
# .../ansible_collections/homelab/immich_proxy and reads os.getcwd(), which a
# symlink does not fool, so the tracked files are copied to a temp tree.
# --docker cannot work here; --local needs no pip bootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYVER=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/homelab/immich_proxy
mkdir -p "$dest"
git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest"
cd "$dest"
git init -q . && git add -A >/dev/null
ansible-test sanity --local --python "$PYVER" --color no\
  "$@"
ansible-test units --local --python "$PYVER" --color no
