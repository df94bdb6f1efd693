#!/usr/bin/env bash
# The main job on an embedded default: a Debian 12 container with the Immich
# test double (a stand-in for Immich), playbooks/site.yml deploys the proxy that
# KIND names (nginx by default; any kind of the collection) in front of it,
# playbooks/check.yml reports each end-to-end check, and a request from this
# machine shows what Immich received. A kind that needs more than
# inventory/demo with immich_proxy_kind=KIND has its own inventory/demo-KIND/
# (hosts.yml, and a show.sh that prints what the kind leaves on the host): the
# cloudflared one is the split set-up, a tunnel (the test-only cloudflared
# stand-in) and nginx on the LAN for uploads. DEMO_KEEP=1 leaves the container up.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${KIND:-nginx}
NAME=immich-proxy-demo
INVENTORY=inventory/demo/hosts.yml
KIND_VAR=(-e "immich_proxy_kind=$KIND")
SHOW=
if [ -d "inventory/demo-$KIND" ]; then
  # each host of the kind's own inventory says its kind
  INVENTORY=inventory/demo-$KIND/hosts.yml
  KIND_VAR=()
  [ -f "inventory/demo-$KIND/show.sh" ] && SHOW=inventory/demo-$KIND/show.sh
fi
cleanup() { [ "${DEMO_KEEP:-0}" = 1 ] || docker rm -f "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT

docker rm -f "$NAME" >/dev/null 2>&1 || true
docker run -d --name "$NAME" --hostname "$NAME" \
  --cap-add SYS_ADMIN --security-opt seccomp=unconfined --cgroupns host \
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
  immich-proxy-test:bookworm /lib/systemd/systemd >/dev/null
until docker exec "$NAME" systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded'; do sleep 1; done

echo "== the Immich test double (stand-in for Immich) on 127.0.0.1:2283 in $NAME"
ansible-playbook -i "$INVENTORY" tests/immich_double/install.yml
echo "== playbooks/site.yml deploys $KIND in front of it"
ansible-playbook -i "$INVENTORY" "${KIND_VAR[@]}" playbooks/site.yml
echo "== playbooks/check.yml checks it end to end"
ansible-playbook -i "$INVENTORY" "${KIND_VAR[@]}" playbooks/check.yml
if [ -n "$SHOW" ]; then
  NAME=$NAME bash "$SHOW"
fi

ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$NAME")
ca=$(mktemp)
docker exec "$NAME" cat /etc/immich-proxy/tls/photos.immich.test/fullchain.pem >"$ca"
echo "== from this machine: https://photos.immich.test (at $ip)"
curl -sS --cacert "$ca" --resolve "photos.immich.test:443:$ip" https://photos.immich.test/.well-known/immich
echo
curl -sS --cacert "$ca" --resolve "photos.immich.test:443:$ip" https://photos.immich.test/api/server/ping
echo
echo "What Immich received for a request with forged X-Forwarded-For (it is replaced by the real address):"
curl -sS --cacert "$ca" --resolve "photos.immich.test:443:$ip" -H 'X-Forwarded-For: 6.6.6.6' \
  https://photos.immich.test/_double/echo | python3 -c 'import json,sys; [print("  %s: %s" % tuple(h)) for h in json.load(sys.stdin)["headers"]]'
rm -f "$ca"
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  echo "== $NAME keeps running (make demo-clean removes it)"
else
  echo "== demo done; the container is removed (DEMO_KEEP=1 keeps it)"
fi
