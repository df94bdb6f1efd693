# SPDX-License-Identifier: GPL-3.0-or-later
"""One upload for the benchmark, run inside the proxy's container (standard library only).

Sends SIZE bytes as an Immich asset upload (multipart/form-data, the fields the
apps send, the file part last) to URL, optionally paced to RATE bytes/s, and
meanwhile samples the named processes: the bytes they caused to be written to
storage (/proc/PID/io write_bytes), their CPU time (/proc/PID/stat) and their
total resident memory. URL is the Immich test double's /_double/sink (a stand-in
for Immich that reads the whole body), directly or through a proxy. Prints one
JSON object; a failed upload is a result too (status and error), not a crash.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import threading
import time
from urllib.parse import urlsplit

BLOCK = os.urandom(1024 * 1024)
BOUNDARY = b"immichproxybenchboundary"
TICKS = os.sysconf("SC_CLK_TCK")


def pids_of(units):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cgroup" % entry) as handle:
                    if any("/%s" % unit in line for line in handle for unit in units):
                        found.append(int(entry))
            except OSError:
                pass
    return found


def sample(units):
    """pid -> (write_bytes, cpu_seconds, rss_bytes)"""
    out = {}
    for pid in pids_of(units):
        try:
            with open("/proc/%d/io" % pid) as handle:
                io = dict(line.split(": ") for line in handle.read().splitlines())
            with open("/proc/%d/stat" % pid) as handle:
                stat = handle.read().rsplit(")", 1)[1].split()
            with open("/proc/%d/status" % pid) as handle:
                rss = [int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:")]
        except OSError:
            continue
        # utime and stime: fields 14 and 15 of stat, 12 and 13 after the command
        out[pid] = (int(io["write_bytes"]), (int(stat[11]) + int(stat[12])) / TICKS, rss[0] if rss else 0)
    return out


class Watcher(threading.Thread):
    def __init__(self, units):
        super().__init__(daemon=True)
        self.names = set(units)
        self.before = sample(self.names)
        self.last = dict(self.before)
        self.peak_rss = sum(entry[2] for entry in self.before.values())
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.05):
            now = sample(self.names)
            self.last.update(now)
            self.peak_rss = max(self.peak_rss, sum(entry[2] for entry in now.values()))

    def result(self):
        self.stop.set()
        self.join()
        self.last.update(sample(self.names))
        zero = (0, 0.0, 0)
        written = sum(self.last[pid][0] - self.before.get(pid, zero)[0] for pid in self.last)
        cpu = sum(self.last[pid][1] - self.before.get(pid, zero)[1] for pid in self.last)
        base_rss = sum(entry[2] for entry in self.before.values())
        return {"written_bytes": written, "cpu_seconds": round(cpu, 3), "rss_before": base_rss,
                "rss_peak": self.peak_rss}


def multipart(size):
    fields = {"deviceAssetId": "bench-%d" % size, "deviceId": "homelab.immich_proxy-bench",
              "fileCreatedAt": "2026-01-01T00:00:00.000Z", "fileModifiedAt": "2026-01-01T00:00:00.000Z",
              "fileSize": str(size), "isFavorite": "false"}
    head = b"".join(b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                    % (BOUNDARY, key.encode(), value.encode()) for key, value in fields.items())
    head += (b"--%s\r\nContent-Disposition: form-data; name=\"assetData\"; filename=\"video.mp4\"\r\n"
             b"Content-Type: video/mp4\r\n\r\n" % BOUNDARY)
    return head, b"\r\n--%s--\r\n" % BOUNDARY


def body(head, size, tail, rate):
    """The upload, paced like a link of RATE bytes/s: time lost to a stall is not made up later."""
    yield head
    sent = 0
    due = time.monotonic()
    while sent < size:
        piece = BLOCK if size - sent >= len(BLOCK) else BLOCK[: size - sent]
        sent += len(piece)
        yield piece
        if rate:
            due = max(due, time.monotonic()) + len(piece) / rate
            ahead = due - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    yield tail


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0, help="bytes per second, 0 for unlimited")
    parser.add_argument("--unit", action="append", required=True, help="systemd unit whose processes to measure")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    head, tail = multipart(args.size)
    total = len(head) + args.size + len(tail)
    watcher = Watcher(args.unit)
    if not watcher.before:
        raise SystemExit("no process of %s runs: nothing to measure" % " or ".join(args.unit))
    watcher.start()
    result = {"bytes": total, "status": None, "received": None, "error": None}
    started = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=900)
    try:
        conn.request("POST", parts.path, body=body(head, args.size, tail, args.rate),
                     headers={"Content-Length": str(total), "Host": "photos.immich.test", "x-api-key": "bench",
                              "Content-Type": "multipart/form-data; boundary=%s" % BOUNDARY.decode()})
        response = conn.getresponse()
        answer = response.read()
        result["status"] = response.status
        if response.status == 200:
            result["received"] = json.loads(answer).get("bytes")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        result["error"] = "%s: %s" % (type(exc).__name__, exc)
        if conn.sock is not None and result["status"] is None:
            try:  # a proxy that refused the body may have answered before it closed
                result["status"] = conn.getresponse().status
            except (OSError, http.client.HTTPException):
                pass
    result["seconds"] = time.monotonic() - started
    result.update(watcher.result())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
