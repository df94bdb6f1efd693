#!/usr/bin/env bash
# Installs the test bed on a fresh Debian machine, idempotently:
# Docker (Debian's docker.io, dockerd started if none answers), the Debian 12
# and 13 base images (built locally: no registry is reachable), the Python venv
# with pinned tools, and the Ansible collections molecule's docker driver needs
# (unpacked from PyPI's ansible wheel: Galaxy is not reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/.cache
PY=${PYTHON:-python3}
ANSIBLE_BUNDLE_VERSION=12.3.0
mkdir -p "$CACHE"

log() { printf '\n== %s\n' "$*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

ensure_docker() {
  # gnupg signs the cloudflared scenario's test apt repository
  apt_install docker.io mmdebstrap iptables gnupg
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    (dockerd >"$CACHE/dockerd.log" 2>&1 &)
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -n 30 "$CACHE/dockerd.log"; echo "dockerd did not start" >&2; exit 1; }
  fi
}

IMAGE_PACKAGES=python3,systemd,systemd-sysv,iproute2,ca-certificates,curl,procps,sudo
ensure_image() {  # ensure_image SUITE; rebuilt when IMAGE_PACKAGES changes
  local suite=$1 tag=immich-proxy-test:$1 rev
  rev=$(echo "$IMAGE_PACKAGES" | sha256sum | cut -c1-12)
  [ "$(docker image inspect -f '{{ index .Config.Labels "immich-proxy.rev" }}' "$tag" 2>/dev/null)" = "$rev" ] && return 0
  log "building $tag with mmdebstrap"
  mmdebstrap --quiet --variant=apt --include="$IMAGE_PACKAGES" "$suite" "$CACHE/$suite.tar"
  docker import --change 'CMD ["/lib/systemd/systemd"]' --change "LABEL immich-proxy.rev=$rev" \
    "$CACHE/$suite.tar" "$tag"
  rm -f "$CACHE/$suite.tar"
}

ensure_venv() {
  local stamp=.venv/.requirements.sha256 want
  want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
  if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  log "creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" >"$stamp"
}

ensure_collections() {
  local dest=$CACHE/collections/ansible_collections stamp=$CACHE/collections/.bundle
  mkdir -p "$dest/homelab"
  ln -sfn "$ROOT" "$dest/homelab/immich_proxy"
  [ "$(cat "$stamp" 2>/dev/null)" = "$ANSIBLE_BUNDLE_VERSION" ] && return 0
  log "unpacking community.docker, community.crypto, ansible.posix from ansible $ANSIBLE_BUNDLE_VERSION"
  local tmp; tmp=$(mktemp -d)
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$tmp" "ansible==$ANSIBLE_BUNDLE_VERSION"
  .venv/bin/python - "$tmp"/ansible-*.whl "$dest" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
wanted = ("community/docker/", "community/library_inventory_filtering_v1/", "community/crypto/", "ansible/posix/")
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        rel = name.split("ansible_collections/", 1)[-1]
        if name.startswith("ansible_collections/") and rel.startswith(wanted):
            z.extract(name, dest + "/..")
PY
  rm -rf "$tmp"
  echo "$ANSIBLE_BUNDLE_VERSION" >"$stamp"
}

# ansible-test bootstraps pip in each venv it makes with a get-pip script from a
# site that is not reachable here. This stand-in does what get-pip does, with
# pip's own wheel from PyPI: run pip from the wheel to install the pins asked for.
ensure_ansible_test_pip() {
  local version cache=$HOME/.ansible/test/cache script
  version=$(.venv/bin/python - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)
  script=$cache/get_pip_${version//./_}.py
  [ -f "$script" ] && [ -f "$cache/pip-$version-py3-none-any.whl" ] && return 0
  log "providing ansible-test's pip $version bootstrap offline"
  mkdir -p "$cache"
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$cache" "pip==$version"
  cat >"$script" <<PY
# Offline stand-in for get-pip.py $version (written by scripts/testbed.sh).
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-$version-py3-none-any.whl"))
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
PY
}

# The real Immich CLI and Node 22 (it needs 22; the machine has 20), from npm, pinned by the lock file.
ensure_immich_cli() {
  local dir=tests/immich_cli stamp want
  stamp=$dir/node_modules/.lock.sha256
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [ -x "$dir/node_modules/.bin/immich" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  command -v npm >/dev/null || apt_install npm
  log "installing @immich/cli and Node 22 from npm"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

case "${1:-all}" in
  docker) ensure_docker ;;
  images) ensure_docker; ensure_image bookworm; ensure_image trixie ;;
  venv) ensure_venv; ensure_collections; ensure_ansible_test_pip; ensure_immich_cli ;;
  all) ensure_venv; ensure_collections; ensure_ansible_test_pip; ensure_immich_cli; ensure_docker; ensure_image bookworm; ensure_image trixie ;;
  *) echo "usage: $0 [all|docker|images|venv]" >&2; exit 2 ;;
esac
