# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmarks for every HTTP proxy the collection deploys, measured side by side in one run.

For each kind in the behaviour suite's traits (tests/behaviour/harness.py KINDS) that
answers HTTP on its host, a fresh Debian 12 container gets the Immich test double
(tests/immich_double, a stand-in for Immich: the real server cannot run here) and
the proxy, deployed by playbooks/site.yml. Then, in that container and against a
direct connection to the double in the same run:

1. the first converge and a no-op re-run of site.yml are timed, the re-run with
   ansible.posix.profile_tasks;
2. Immich's documented example config of the same proxy (the kind's "documented"
   trait) is started beside the collection's;
3. a multipart upload of BENCH_SIZE bytes (4 GiB) goes to the double's sink
   directly, through the collection's proxy and through the documented config, at
   1 Gbit/s, 2.5 Gbit/s and unpaced, while the proxy's processes are measured;
4. wrk sends GET /api/server/ping directly and through the proxy;
5. the role applies a config change (the kind's config_change_vars and a second backend) while wrk
   runs and websockets are open.

Then a fleet of BENCH_FLEET containers gets nginx in one run (forks = fleet size),
against the single nginx host's first converge. Everything is written to
docs/benchmarks.md with PNG charts under docs/benchmarks/; the run prints each
target and whether it is met. Absolute numbers on a shared machine are noise:
the ratios are what compare.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

import websocket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "behaviour"))
from harness import KINDS, container_address  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "bench"))
from report import render  # noqa: E402

GiB = 1024 ** 3
MiB = 1024 ** 2
SPEEDS = (("1 Gbit/s", 1e9 / 8), ("2.5 Gbit/s", 2.5e9 / 8), ("unpaced", 0))
# the slow upload: long enough to outlast a 60 s read timeout, at a rate a phone on mobile data reaches
SLOW_RATE = 1024 ** 2
SLOW_SECONDS = 75
# unpaced uploads take seconds: the median of this many rounds, the paths in turn; the report compares two paths
# round by round (report.compare), and only a difference every round shows counts
UNPACED_ROUNDS = 5
# how long the load runs in the config change under load; the role's run starts 5 s in and must end before it
LOAD_SECONDS = 60
PREFIX = "immich-proxy-bench"
HOST = "photos.immich.test"
FIRST_PORT = 2283


def log(message):
    print("bench: %s" % message, flush=True)


class Failed(Exception):
    """A command of the benchmark failed; str() says which and ends with its output."""


def sh(argv, check=True, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if check and result.returncode != 0:
        raise Failed("%s failed (%d):\n%s\n%s" % (" ".join(argv[:6]), result.returncode, result.stdout[-3000:],
                                                  result.stderr[-3000:]))
    return result


def in_container(name, script, check=True):
    return sh(["docker", "exec", name, "sh", "-c", script], check=check).stdout


def start_containers(names):
    for name in names:
        sh(["docker", "rm", "-f", name], check=False)
        sh(["docker", "run", "-d", "--name", name, "--hostname", name, "--cap-add", "SYS_ADMIN",
            "--cap-add", "SYS_PTRACE", "--security-opt", "seccomp=unconfined", "--cgroupns", "host",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "immich-proxy-test:bookworm", "/lib/systemd/systemd"])
    for name in names:
        for _attempt in range(120):
            state = sh(["docker", "exec", name, "systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        # a /proc/sys the container may write, as a host may: the caddy role sets what Caddy's reloads need there
        # (after boot, as molecule/_shared/prepare.yml does, so that no sysctl.d file of the image reaches the machine)
        sh(["docker", "exec", name, "mount", "-o", "remount,rw,bind", "/proc/sys"])


def remove_containers(names):
    if names:
        sh(["docker", "rm", "-f", *names], check=False)


def write_inventory(path, names, kind, extra):
    hostvars = {
        "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_pipelining": True,
        "immich_proxy_kind": kind,
        "immich_proxy_public_url": "http://%s" % HOST,
        "immich_proxy_backends": ["http://127.0.0.1:%d" % FIRST_PORT],
        # a second double waits for the change under load, which adds it to the pool
        "immich_double_ports": [FIRST_PORT, FIRST_PORT + 1],
    }
    hostvars.update(extra)
    inventory = {"all": {"children": {"immich_proxies": {"hosts": {name: {} for name in names}, "vars": hostvars}}}}
    with open(path, "w") as handle:
        json.dump(inventory, handle, indent=1)


def playbook(inventory, path, forks=5, extra=None, profile=False):
    """(seconds, changed, output) of one ansible-playbook run."""
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="false", ANSIBLE_NOCOLOR="1")
    # the collection and those molecule's docker driver needs, as scripts/testbed.sh unpacked them
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(ROOT, ".cache", "collections"))
    if profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
        env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "all"
    argv = ["ansible-playbook", "-i", inventory, "-f", str(forks), path]
    if extra:
        argv += ["-e", json.dumps(extra)]
    started = time.monotonic()
    result = sh(argv, env=env)
    seconds = time.monotonic() - started
    recap = result.stdout.split("PLAY RECAP")[-1]
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", recap))
    return seconds, changed, result.stdout


def busy_cpu_seconds(stat="/proc/stat"):
    """CPU seconds the whole machine has spent busy (all cores, not idle or waiting on I/O) since boot."""
    with open(stat) as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def first_converge(inventory, forks=5):
    """(seconds, busy CPU seconds of the machine) of the first run of site.yml.

    The CPU it took says whether the run waited or worked: a run that keeps every core busy cannot go faster with
    more forks, and eight hosts' work on two cores takes at least four times one host's CPU time.
    """
    busy = busy_cpu_seconds()
    seconds, _changed, _output = playbook(inventory, os.path.join(ROOT, "playbooks", "site.yml"), forks=forks)
    return seconds, busy_cpu_seconds() - busy


def noop_runs(inventory, forks=5, count=3):
    """(median seconds, the most any run changed, the median run's output, every run's seconds, the median run's
    busy CPU seconds of the machine) of no-op re-runs.

    One run is at the mercy of whatever else the shared machine does in those seconds; the first converge can only
    be measured once per host, its re-runs several times.
    """
    runs = []
    for _round in range(count):
        busy = busy_cpu_seconds()
        runs.append(playbook(inventory, os.path.join(ROOT, "playbooks", "site.yml"), forks=forks)
                    + (busy_cpu_seconds() - busy,))
    median = sorted(runs, key=lambda run: run[0])[count // 2]
    return median[0], max(run[1] for run in runs), median[2], [run[0] for run in runs], median[3]


def profile_lines(output, top=8):
    """The slowest tasks of a run, as profile_tasks printed them: [(task, seconds)]."""
    found = re.findall(r"^(.+?) -+ (\d+\.\d+)s$", output.split("PLAY RECAP")[-1], re.M)
    tasks = [(name.strip(), float(seconds)) for name, seconds in found]
    return sorted(tasks, key=lambda item: -item[1])[:top]


def module_calls(output):
    """Tasks that ran a module on the no-op path (ok or changed), against those skipped."""
    ran = len(re.findall(r"^(?:ok|changed): \[", output, re.M))
    skipped = len(re.findall(r"^skipping: \[", output, re.M))
    return ran, skipped


def upload(name, url, size, rate, unit):
    argv = ["python3", "/opt/bench/upload_client.py", url, "--size", str(size), "--rate", str(rate), "--unit", unit]
    result = json.loads(in_container(name, " ".join(argv)))
    result["ok"] = result["status"] == 200 and result["received"] == result["bytes"]
    return result


def median_of(results):
    """The run of median time among several unpaced uploads of one path, with every round's time."""
    ranked = sorted(results, key=lambda result: result["seconds"])
    chosen = dict(ranked[len(ranked) // 2])
    chosen["rounds"] = [result["seconds"] if result["ok"] else None for result in results]
    chosen["cpu_rounds"] = [result["cpu_seconds"] if result["ok"] else None for result in results]
    chosen["ok"] = all(result["ok"] for result in results)
    return chosen


def wrk(name, port, seconds=10, connections=16, close=False):
    """wrk on GET /api/server/ping, keep-alive unless close (then a new connection for every request)."""
    header = " -H 'Connection: close'" if close else ""
    out = in_container(name, "wrk -t2 -c%d -d%ds --latency -H 'Host: %s'%s http://127.0.0.1:%d/api/server/ping"
                       % (connections, seconds, HOST, header, port))
    return parse_wrk(out)


def parse_wrk(out):
    def find(pattern):
        match = re.search(pattern, out, re.M)
        if not match:
            raise Failed("wrk printed no line matching %r:\n%s" % (pattern, out[-2000:]))
        return match.group(1)

    def ms(text):
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}[unit]

    result = {"rps": float(find(r"Requests/sec:\s+([\d.]+)")),
              "p50_ms": ms(find(r"^\s+50%\s+(\S+)")),
              "p99_ms": ms(find(r"^\s+99%\s+(\S+)")),
              "requests": int(find(r"(\d+) requests in")),
              "non_2xx": int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    for field, count in zip(("connect", "read", "write", "timeout"), errors.groups() if errors else (0,) * 4):
        result[field] = int(count)
    result["socket_errors"] = sum(result[field] for field in ("connect", "read", "write", "timeout"))
    return result


def open_websocket(ip):
    ws = websocket.create_connection("ws://%s:80/api/socket.io/?EIO=4&transport=websocket" % ip, host=HOST,
                                     timeout=15)
    if not ws.recv().startswith("0"):
        raise SystemExit("the websocket through the proxy did not open")
    ws.send("40")
    ws.recv()
    return ws


def websocket_alive(ws, text):
    try:
        ws.send('42["on_upload_success","%s"]' % text)
        return ws.recv() == '42["on_upload_success","%s"]' % text
    except (OSError, websocket.WebSocketException):
        return False


def install_documented(name, documented):
    in_container(name, "mkdir -p /opt/bench")
    for path, text in documented["files"].items():
        in_container(name, "mkdir -p %s && cat > %s <<'BENCH_EOF'\n%s\nBENCH_EOF" % (os.path.dirname(path), path,
                                                                                     text.strip("\n")))
    in_container(name, documented["apply"])
    for port in documented["ports"].values():
        in_container(name, "for i in $(seq 100); do curl -fs -o /dev/null -H 'Host: %s' "
                           "http://127.0.0.1:%d/api/server/ping && exit 0; sleep 0.2; done; exit 1" % (HOST, port))


def bench_kind(kind, traits, size, inventory_dir):
    name = "%s-%s" % (PREFIX, kind)
    found = {"kind": kind}
    start_containers([name])
    try:
        inventory = os.path.join(inventory_dir, "%s.json" % kind)
        extra = {key: value.replace("{root}", ROOT) if isinstance(value, str) else value
                 for key, value in traits["bench"]["vars"].items()}
        write_inventory(inventory, [name], kind, extra)
        log("%s: installing the Immich test double" % kind)
        playbook(inventory, os.path.join(ROOT, "tests", "immich_double", "install.yml"))
        log("%s: first converge of site.yml" % kind)
        first, first_cpu = first_converge(inventory)
        again, changed, output, rounds, again_cpu = noop_runs(inventory)
        # the profile from one more run: the callback's own cost stays out of the timed ones
        _seconds, _changed, profiled = playbook(inventory, os.path.join(ROOT, "playbooks", "site.yml"), profile=True)
        found["ansible"] = {"first_s": first, "first_cpu_s": first_cpu, "noop_s": again, "noop_cpu_s": again_cpu,
                            "noop_changed": changed,
                            "noop_rounds": rounds,
                            "noop_profile": profile_lines(profiled), "noop_calls": module_calls(output)}
        log("%s: first converge %.1f s, no-op re-run %.1f s (median of %s; changed=%d)"
            % (kind, first, again, ", ".join("%.1f" % seconds for seconds in rounds), changed))

        in_container(name, "apt-get install -y -q wrk >/dev/null 2>&1 || "
                           "(apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null)")
        sh(["docker", "cp", os.path.join(ROOT, "bench", "upload_client.py"), name + ":/opt/"])
        in_container(name, "mkdir -p /opt/bench && mv /opt/upload_client.py /opt/bench/")
        documented = traits["bench"]["documented"]
        install_documented(name, documented)
        found["version"] = in_container(name, traits["bench"]["version"]).strip()

        paths = {"direct": FIRST_PORT, "collection": 80}
        paths.update(documented["ports"])
        # whose processes are measured: the collection's service (idle during a direct upload), or the unit
        # that runs the documented config (the same service for nginx and Apache, a second daemon otherwise)
        service = traits["service"] + ".service"
        units = {path: documented.get("unit", service) if path in documented["ports"] else service for path in paths}
        uploads = found["uploads"] = {}
        for label, rate in SPEEDS:
            runs = {path: [] for path in paths}
            # unpaced uploads take seconds, and one run is noise: several rounds, the paths in turn
            for _round in range(1 if rate else UNPACED_ROUNDS):
                for path, port in paths.items():
                    log("%s: %d MiB at %s, %s" % (kind, size // MiB, label, path))
                    runs[path].append(upload(name, "http://127.0.0.1:%d/_double/sink" % port, size, rate,
                                             units[path]))
            for path, results in runs.items():
                uploads["%s|%s" % (label, path)] = results[0] if rate else median_of(results)
        slow = found["slow"] = {}
        for path in documented.get("slow", []):
            for label in ("collection", path):
                log("%s: a slow upload (%d s at 1 MiB/s), %s" % (kind, SLOW_SECONDS, label))
                slow[label] = upload(name, "http://127.0.0.1:%d/_double/sink" % paths[label],
                                     SLOW_RATE * SLOW_SECONDS, SLOW_RATE, units[label])

        log("%s: wrk, direct and through the proxy" % kind)
        found["wrk"] = {"direct": wrk(name, FIRST_PORT), "collection": wrk(name, 80)}
        found["reload"] = reload_under_load(name, kind, traits, inventory)
    finally:
        remove_containers([name])
    return found


def reload_under_load(name, kind, traits, inventory):
    log("%s: a config change applied while wrk runs and websockets are open" % kind)
    ip = container_address(name)
    sockets = [open_websocket(ip) for _number in range(4)]
    out = {}

    def load(label, close):
        try:
            out[label] = wrk(name, 80, seconds=LOAD_SECONDS, connections=8, close=close)
        except Failed as exc:
            out[label + "_error"] = str(exc)

    threads = [threading.Thread(target=load, args=("keepalive", False)),
               threading.Thread(target=load, args=("close", True))]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(5)
    change = dict(traits["config_change_vars"],
                  immich_proxy_backends=["http://127.0.0.1:%d" % port for port in (FIRST_PORT, FIRST_PORT + 1)])
    try:
        seconds, changed, output = playbook(inventory, os.path.join(ROOT, "playbooks", "site.yml"), extra=change)
        error = None
    except Failed as exc:
        # the role refusing to run under load is a finding, not the end of the benchmark
        seconds, changed, output = 0.0, 0, ""
        error = " ".join(re.findall(r'"msg": "([^"]*)"', str(exc))[:1]) or str(exc)[-500:]
    role_ended = time.monotonic() - began
    for thread in threads:
        thread.join()
    for label in ("keepalive", "close"):
        if label + "_error" in out:
            raise Failed(out[label + "_error"])
    alive = sum(websocket_alive(ws, "after-%d" % number) for number, ws in enumerate(sockets))
    for ws in sockets:
        ws.close()
    announced = "reloads to take its new configuration:" in output or "restarts to take its new" in output
    keepalive, close = out["keepalive"], out["close"]
    # A keep-alive connection the old configuration's workers close just as the client sends on it ends in a
    # read or write error before any answer: the request never reached the proxy, and HTTP clients send it again
    # on a new connection (RFC 9112 9.3.1), browsers and the apps' HTTP stacks included; wrk does not. Those are
    # counted apart. Every other error, and every error of the new-connection-per-request load, is a failure.
    failed = (keepalive["non_2xx"] + keepalive["connect"] + keepalive["timeout"] + close["non_2xx"]
              + close["socket_errors"])
    result = {"requests": keepalive["requests"] + close["requests"], "failed": failed,
              "keepalive_closed": keepalive["read"] + keepalive["write"], "keepalive": keepalive, "close": close,
              "role_s": seconds, "changed": changed, "websockets": len(sockets),
              "websockets_dropped": len(sockets) - alive, "drop_announced": announced,
              # the role's run ended while the load still ran (a second's margin)
              "load_s": LOAD_SECONDS, "role_ended_s": round(role_ended, 1),
              "covered": role_ended < LOAD_SECONDS - 1}
    result["role_error"] = error
    if not changed and not error:
        raise Failed("%s: the config change %r changed nothing: the reload was not tested" % (kind, change))
    return result


def bench_fleet(count, inventory_dir):
    names = ["%s-fleet-%d" % (PREFIX, number) for number in range(1, count + 1)]
    start_containers(names)
    try:
        inventory = os.path.join(inventory_dir, "fleet.json")
        write_inventory(inventory, names, "nginx", KINDS["nginx"]["bench"]["vars"])
        log("fleet: installing the Immich test double on %d hosts" % count)
        playbook(inventory, os.path.join(ROOT, "tests", "immich_double", "install.yml"), forks=count)
        log("fleet: first converge of site.yml on %d hosts" % count)
        first, first_cpu = first_converge(inventory, forks=count)
        again, changed, _output, rounds, again_cpu = noop_runs(inventory, forks=count)
        return {"hosts": count, "first_s": first, "first_cpu_s": first_cpu, "noop_s": again, "noop_cpu_s": again_cpu,
                "noop_changed": changed, "noop_rounds": rounds}
    finally:
        remove_containers(names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    http_kinds = [kind for kind, traits in KINDS.items() if traits["listens"]]
    parser.add_argument("--kinds", default=",".join(http_kinds), help="comma-separated (default: %(default)s)")
    parser.add_argument("--size", type=int, default=int(os.environ.get("BENCH_SIZE", str(4 * GiB))))
    parser.add_argument("--fleet", type=int, default=int(os.environ.get("BENCH_FLEET", "8")),
                        help="hosts in the fleet run, 0 to skip it")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--render", action="store_true",
                        help="only write the page again from the last run's results (docs/benchmarks/results.json)")
    args = parser.parse_args()
    inventory_dir = os.path.join(ROOT, ".cache", "bench")
    if args.render:
        with open(os.path.join(os.path.dirname(args.out), "benchmarks", "results.json")) as handle:
            summary, missed = render(json.load(handle), args.out)
        print(summary)
        return 1 if missed else 0
    kinds = [kind for kind in args.kinds.split(",") if kind]
    unknown = sorted(set(kinds) - set(http_kinds))
    if unknown:
        raise SystemExit("--kinds: %s is not a kind that answers HTTP (%s)"
                         % (", ".join(unknown), ", ".join(http_kinds)))
    os.makedirs(inventory_dir, exist_ok=True)
    results = {"size": args.size, "speeds": [label for label, _rate in SPEEDS], "slow_seconds": SLOW_SECONDS,
               "kinds": {}, "fleet": None, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "cores": os.cpu_count(),
               "machine": "%d cores, %.0f GiB" % (os.cpu_count(), os.sysconf("SC_PAGE_SIZE")
                                                  * os.sysconf("SC_PHYS_PAGES") / GiB)}
    for kind in kinds:
        results["kinds"][kind] = bench_kind(kind, KINDS[kind], args.size, inventory_dir)
        with open(os.path.join(inventory_dir, "results.json"), "w") as handle:
            json.dump(results, handle, indent=1)
    if args.fleet and "nginx" in kinds:
        results["fleet"] = bench_fleet(args.fleet, inventory_dir)
    with open(os.path.join(inventory_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    summary, missed = render(results, args.out)
    with open(os.path.join(os.path.dirname(args.out), "benchmarks", "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    print(summary)
    return 1 if missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as exc:
        raise SystemExit("bench: %s" % exc) from None
