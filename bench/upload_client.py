# SPDX-License-Identifier: GPL-3.0-or-later
"""One upload for the benchmark, run inside the proxy's container (standard library only).

Streams SIZE bytes to URL (the Immich test double's /_double/sink, directly or
through the proxy), optionally paced to RATE bytes/s, and meanwhile samples the
named processes: bytes they caused to be written to storage (/proc/PID/io
write_bytes) and their total resident memory. Prints one JSON object.
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


def pids_of(name):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/comm" % entry) as handle:
                    if handle.read().strip() == name:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def sample(names):
    """pid -> (write_bytes, rss_bytes)"""
    out = {}
    for name in names:
        for pid in pids_of(name):
            try:
                with open("/proc/%d/io" % pid) as handle:
                    io = dict(line.split(": ") for line in handle.read().splitlines())
                with open("/proc/%d/status" % pid) as handle:
                    rss = [int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:")]
            except OSError:
                continue
            out[pid] = (int(io["write_bytes"]), rss[0] if rss else 0)
    return out


class Watcher(threading.Thread):
    def __init__(self, names):
        super().__init__(daemon=True)
        self.names = names
        self.before = sample(names)
        self.last = self.before
        self.peak_rss = sum(rss for _written, rss in self.before.values())
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.1):
            now = sample(self.names)
            self.last = {**self.last, **now}
            self.peak_rss = max(self.peak_rss, sum(rss for _written, rss in now.values()))

    def result(self):
        self.stop.set()
        self.join()
        written = sum(self.last[pid][0] - self.before.get(pid, (0, 0))[0] for pid in self.last)
        base_rss = sum(rss for _written, rss in self.before.values())
        return {"written_bytes": written, "rss_before": base_rss, "rss_peak": self.peak_rss}


def body(size, rate):
    sent = 0
    started = time.monotonic()
    while sent < size:
        piece = BLOCK if size - sent >= len(BLOCK) else BLOCK[: size - sent]
        sent += len(piece)
        yield piece
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0, help="bytes per second, 0 for unlimited")
    parser.add_argument("--watch", action="append", default=[], help="process name to measure")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    watcher = Watcher(args.watch)
    watcher.start()
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=600)
    started = time.monotonic()
    conn.request("POST", parts.path, body=body(args.size, args.rate),
                 headers={"Content-Length": str(args.size), "Content-Type": "application/octet-stream",
                          "Host": "photos.immich.test"})
    response = conn.getresponse()
    answer = response.read()
    seconds = time.monotonic() - started
    result = {"status": response.status, "seconds": seconds, "bytes": args.size,
              "received": json.loads(answer).get("bytes") if response.status == 200 else None}
    result.update(watcher.result())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
