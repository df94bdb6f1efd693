#!/usr/bin/env bash
# The main job on an embedded default: a Debian 12 container with the Immich
# test double (a stand-in for Immich), playbooks/site.yml deploys the proxy that
# KIND names (nginx by default; KIND=apache, KIND=caddy or KIND=traefik) in front of it,
# playbooks/check.yml reports each end-to-end check, and a request from this
# machine shows what Immich received. KIND=cloudflared deploys the split set-up
# (inventory/demo-tunnel: a tunnel, with the test-only cloudflared stand-in, and
# nginx for uploads on the LAN). DEMO_KEEP=1 leaves the container up.
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${KIND:-nginx}
NAME=immich-proxy-demo
INVENTORY=inventory/demo/hosts.yml
KIND_VAR=(-e "immich_proxy_kind=$KIND")
HTTP_KIND=$KIND
if [ "$KIND" = cloudflared ]; then
  # the split set-up: each host of the inventory has its own kind
  INVENTORY=inventory/demo-tunnel/hosts.yml
  KIND_VAR=()
  HTTP_KIND="nginx on the LAN"
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
if [ "$KIND" = cloudflared ]; then
  echo "== the tunnel (TEST-ONLY STAND-IN for cloudflared: it tunnels nothing; Cloudflare's edge is not reachable)"
  docker exec "$NAME" sh -c 'ls -l /etc/cloudflared; ps -o user=,args= -C cloudflared; echo "/ready:"; \
    curl -sS http://127.0.0.1:20241/ready; echo'
  echo "== uploads go through nginx on the LAN (below): Cloudflare's Free plan cuts them at 100 MB"
fi

ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$NAME")
ca=$(mktemp)
docker exec "$NAME" cat /etc/immich-proxy/tls/photos.immich.test/fullchain.pem >"$ca"
echo "== from this machine: https://photos.immich.test ($HTTP_KIND at $ip)"
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
