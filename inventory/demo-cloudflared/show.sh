#!/usr/bin/env bash
# What `make demo KIND=cloudflared` shows after the checks: the tunnel's files,
# its process and its /ready. TEST-ONLY STAND-IN: the cloudflared here is
# tests/cloudflared_standin/cloudflared-test-standin; it tunnels nothing.
set -euo pipefail
echo "== the tunnel (TEST-ONLY STAND-IN for cloudflared: it tunnels nothing; Cloudflare's edge is not reachable)"
docker exec "$NAME" sh -c 'ls -l /etc/cloudflared; ps -o user=,args= -C cloudflared; echo "/ready:"; \
  curl -sS http://127.0.0.1:20241/ready; echo'
echo "== uploads go through nginx on the LAN (below): Cloudflare's Free plan cuts them at 100 MB"
