# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/benchmarks.md and its charts from one run's results (bench/bench.py), each target with its verdict."""
from __future__ import annotations

import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GiB = 1024 ** 3
MiB = 1024 ** 2
# targets (issue 11): throughput against a direct connection per client speed, the rest per proxy
RATIO_TARGETS = {"1 Gbit/s": 0.97, "2.5 Gbit/s": 0.95}
WRITE_SHARE = 0.01
RSS_GROWTH = 64 * MiB
NOOP_SHARE = 0.25
FLEET_FACTOR = 2.5


def _ratio(uploads, speed, path):
    """The direct upload's time over this path's: 0 where either failed (no ratio to speak of)."""
    direct, other = uploads["%s|direct" % speed], uploads["%s|%s" % (speed, path)]
    return direct["seconds"] / other["seconds"] if other["ok"] and direct["ok"] else 0.0


def label(kind, path):
    """How a path other than direct and the collection's is named: Immich's documented config, or the proxy's
    own defaults (Traefik's)."""
    return "Immich's documented config" if path == "documented" else "%s's %s" % (kind.capitalize(), path)


def _mbps(result):
    return result["bytes"] / result["seconds"] / 1e6


def _outcome(result):
    if result["ok"]:
        return "%.0f MB/s" % _mbps(result)
    what = "HTTP %s" % result["status"] if result["status"] else "no answer"
    error = "; " + result["error"] if result.get("error") else ""
    return "**failed** (%s after %.0f s%s)" % (what, result["seconds"], error)


def _median(values):
    ranked = sorted(values)
    return ranked[len(ranked) // 2]


def compare(ours, theirs):
    """How the collection's unpaced upload compares with another path's: (verdict, what was measured).

    The paths took turns, so round i of each met the same machine, and the rounds are compared in pairs: "faster"
    when the collection took less time in every round, "leaner" when it took less CPU in every round and was not
    slower in every one, "slower" when it took more time in every round, else "even" (each side won a round: the
    difference is within the rounds' noise). Without the same number of rounds on both sides, the medians are
    the one pair. A path whose upload failed in any round loses; "failed" when both did."""
    if not ours["ok"] or not theirs["ok"]:
        verdict = "failed" if not ours["ok"] and not theirs["ok"] else "faster" if ours["ok"] else "slower"
        return verdict, "%s against %s" % (_outcome(ours), _outcome(theirs))
    paired = len(ours.get("rounds") or []) == len(theirs.get("rounds") or []) > 0
    times = list(zip(ours["rounds"], theirs["rounds"])) if paired else [(ours["seconds"], theirs["seconds"])]
    cpu_paired = paired and len(ours.get("cpu_rounds") or []) == len(theirs.get("cpu_rounds") or []) == len(times)
    cpus = list(zip(ours["cpu_rounds"], theirs["cpu_rounds"])) if cpu_paired else []
    quicker = sum(1 for a, b in times if a < b)
    leaner = sum(1 for a, b in cpus if a < b)
    if quicker == len(times):
        verdict = "faster"
    elif cpus and leaner == len(cpus) and quicker > 0:
        verdict = "leaner"
    elif quicker == 0:
        verdict = "slower"
    else:
        verdict = "even"
    measured = "%s against %s (medians): quicker in %d of %d rounds" % (
        _outcome(ours), _outcome(theirs), quicker, len(times))
    if cpus:
        measured += ", less CPU in %d of %d (median %.2f against %.2f CPU s/GiB)" % (
            leaner, len(cpus), _median([a for a, _b in cpus]) / (ours["bytes"] / GiB),
            _median([b for _a, b in cpus]) / (theirs["bytes"] / GiB))
    if len(times) > 1:
        spread = max(max(side) / min(side) - 1 for side in zip(*times))
        measured += "; a path's own rounds differ by up to %.0f%%" % (100 * spread)
    return verdict, measured


def verdicts(results):
    """[(kind or 'all', what, measured, target, met)]"""
    rows = []
    for kind, found in results["kinds"].items():
        uploads = found["uploads"]
        documented = [key.split("|")[1] for key in uploads if key.startswith("unpaced|")
                      and key.split("|")[1] not in ("direct", "collection")]
        for speed, target in RATIO_TARGETS.items():
            ratio = _ratio(uploads, speed, "collection")
            rows.append((kind, "upload at %s against direct" % speed, "%.3f" % ratio, ">= %.2f" % target,
                         ratio >= target))
        collection = uploads["unpaced|collection"]
        for path in documented:
            verdict, measured = compare(collection, uploads["unpaced|%s" % path])
            count = len(collection.get("rounds") or [0])
            what = "unpaced upload (%s) against %s" % ("%d rounds in turn" % count if count > 1 else "one round",
                                                       label(kind, path))
            rows.append((kind, what, "%s: %s" % (verdict, measured), "faster or leaner: less time, or less CPU, in "
                         "every round", verdict in ("faster", "leaner")))
        ours = [result for key, result in uploads.items() if key.endswith("|collection")]
        written = max(result["written_bytes"] for result in ours)
        rows.append((kind, "bytes the proxy wrote to disk during an upload",
                     "%.2f%%" % (100 * written / results["size"]),
                     "<= %d%%" % (100 * WRITE_SHARE), written <= results["size"] * WRITE_SHARE))
        growth = max(result["rss_peak"] - result["rss_before"] for result in ours)
        rows.append((kind, "the proxy's memory growth during an upload", "%.1f MiB" % (growth / MiB),
                     "< %d MiB" % (RSS_GROWTH // MiB), growth < RSS_GROWTH))
        for path, result in found["slow"].items():
            if path == "collection":
                rows.append((kind, "a %d s upload at 1 MiB/s" % results["slow_seconds"], _outcome(result), "succeeds",
                             result["ok"]))
        reload = found["reload"]
        rows.append((kind, "the role's run applying a change under load", reload.get("role_error") or (
            "succeeded, ended %.0f s into the %d s load" % (reload["role_ended_s"], reload["load_s"])
            if "load_s" in reload else "succeeded"), "succeeds while the load runs",
            not reload.get("role_error") and reload.get("covered", True)))
        rows.append((kind, "requests failed while the role applied a change under load",
                     "%d of %d (and %d sent on a keep-alive connection as it closed)"
                     % (reload["failed"], reload["requests"], reload["keepalive_closed"]), "0",
                     reload["failed"] == 0))
        if reload["drop_announced"]:
            rows.append((kind, "websockets dropped by the reload", "%d of %d (the role said so before the reload)"
                         % (reload["websockets_dropped"], reload["websockets"]), "0 where the reload is graceful",
                         True))
        else:
            rows.append((kind, "websockets dropped by the reload", "%d of %d" % (reload["websockets_dropped"],
                                                                                 reload["websockets"]),
                         "0", reload["websockets_dropped"] == 0))
        ansible = found["ansible"]
        share = ansible["noop_s"] / ansible["first_s"]
        rows.append((kind, "no-op re-run of site.yml against the first converge",
                     "%.1f s / %.1f s = %.2f, changed=%d" % (ansible["noop_s"], ansible["first_s"], share,
                                                             ansible["noop_changed"]),
                     "<= %.2f, changed=0" % NOOP_SHARE, share <= NOOP_SHARE and ansible["noop_changed"] == 0))
    fleet = results.get("fleet")
    if fleet and "nginx" in results["kinds"]:
        single = results["kinds"]["nginx"]["ansible"]["first_s"]
        factor = fleet["first_s"] / single
        rows.append(("nginx", "first converge of %d hosts against one" % fleet["hosts"],
                     "%.1f s / %.1f s = %.2f%s" % (fleet["first_s"], single, factor,
                                                   _cpu_bound(results, "first", single)),
                     "<= %.1f" % FLEET_FACTOR, factor <= FLEET_FACTOR))
        share = fleet["noop_s"] / fleet["first_s"]
        rows.append(("nginx", "no-op re-run of %d hosts against their first converge" % fleet["hosts"],
                     "%.1f s / %.1f s = %.2f, changed=%d" % (fleet["noop_s"], fleet["first_s"], share,
                                                             fleet["noop_changed"]),
                     "<= %.2f, changed=0" % NOOP_SHARE, share <= NOOP_SHARE and fleet["noop_changed"] == 0))
        single = results["kinds"]["nginx"]["ansible"]["noop_s"]
        factor = fleet["noop_s"] / single
        rows.append(("nginx", "no-op re-run of %d hosts against one" % fleet["hosts"],
                     "%.1f s / %.1f s = %.2f%s" % (fleet["noop_s"], single, factor,
                                                   _cpu_bound(results, "noop", single)),
                     "<= %.1f" % FLEET_FACTOR, factor <= FLEET_FACTOR))
    return rows


def _cpu_bound(results, run, single):
    """What the machine's cores allowed the fleet's run ("first" or "noop"): its CPU time spread over every core."""
    fleet, cores = results["fleet"], results.get("cores")
    cpu = fleet.get("%s_cpu_s" % run)
    if not cores or cpu is None:
        return ""
    floor = cpu / cores
    return ("; the run kept the machine's %d cores %.0f%% busy (%.0f CPU-seconds): on %d cores that work takes at "
            "least %.1f s, %.2f times one host" % (cores, 100 * floor / fleet["%s_s" % run], cpu, cores, floor,
                                                   floor / single))


# The Ansible cost of the full run of 2026-12-05 00:02 UTC (commit 08105cd), before the no-op path was cut:
# kind -> (first converge s, no-op re-run s, tasks run on the no-op path); the fleet's (first, no-op).
BEFORE = {"run": "the run of 2026-12-05 00:02 UTC, commit 08105cd",
          "kinds": {"nginx": (12.2, 4.9, 16), "apache": (12.5, 4.3, 15), "caddy": (14.0, 6.3, 21),
                    "traefik": (15.7, 10.3, 26)},
          "fleet": (47.1, 15.9)}


def _pairs(axis, labels, left, right):
    """Two bars per label, side by side: left and right are (values, legend)."""
    positions = range(len(labels))
    axis.bar([p - 0.2 for p in positions], left[0], 0.4, label=left[1])
    axis.bar([p + 0.2 for p in positions], right[0], 0.4, label=right[1])
    axis.set_xticks(list(positions), labels)
    return positions


def _save(figure, directory, name, made):
    figure.tight_layout()
    figure.savefig(os.path.join(directory, name), dpi=90)
    plt.close(figure)
    made.append(name)


def charts(results, directory):
    os.makedirs(directory, exist_ok=True)
    kinds = list(results["kinds"])
    speeds = results["speeds"]
    made = []

    figure, axes = plt.subplots(1, len(speeds), figsize=(4 * len(speeds), 3.6), sharey=True)
    for axis, speed in zip(axes, speeds):
        labels, collection, documented = [], [], []
        for kind in kinds:
            uploads = results["kinds"][kind]["uploads"]
            labels.append(kind)
            collection.append(_ratio(uploads, speed, "collection"))
            documented.append(_ratio(uploads, speed, "documented"))
        _pairs(axis, labels, (collection, "this collection"), (documented, "Immich's documented config"))
        axis.axhline(1.0, color="grey", linewidth=0.8)
        if speed in RATIO_TARGETS:
            axis.axhline(RATIO_TARGETS[speed], color="red", linestyle="--", linewidth=0.8, label="target")
        axis.set_title("%s client" % speed)
    axes[0].set_ylabel("throughput / direct (0: failed)")
    axes[-1].legend(loc="lower right", fontsize=8)
    figure.suptitle("%d MiB multipart upload, through the proxy against direct" % (results["size"] // MiB))
    _save(figure, directory, "uploads.png", made)

    figure, (cpu_axis, latency_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    per_gib = [results["kinds"][kind]["uploads"]["unpaced|collection"]["cpu_seconds"]
               / (results["kinds"][kind]["uploads"]["unpaced|collection"]["bytes"] / GiB) for kind in kinds]
    cpu_axis.bar(kinds, per_gib)
    cpu_axis.set_ylabel("CPU seconds per GiB")
    cpu_axis.set_title("the proxy's CPU, unpaced upload")
    direct = [results["kinds"][kind]["wrk"]["direct"] for kind in kinds]
    proxied = [results["kinds"][kind]["wrk"]["collection"] for kind in kinds]
    positions = _pairs(latency_axis, kinds, ([d["p50_ms"] for d in direct], "direct p50"),
                       ([d["p50_ms"] for d in proxied], "through the proxy p50"))
    latency_axis.scatter([p - 0.2 for p in positions], [d["p99_ms"] for d in direct], marker="_", s=200,
                         color="black", label="p99")
    latency_axis.scatter([p + 0.2 for p in positions], [d["p99_ms"] for d in proxied], marker="_", s=200,
                         color="black")
    latency_axis.set_ylabel("ms")
    latency_axis.set_title("GET /api/server/ping with wrk")
    latency_axis.legend(fontsize=8)
    _save(figure, directory, "cpu-latency.png", made)

    figure, axis = plt.subplots(figsize=(6, 3.4))
    first = [results["kinds"][kind]["ansible"]["first_s"] for kind in kinds]
    noop = [results["kinds"][kind]["ansible"]["noop_s"] for kind in kinds]
    labels = list(kinds)
    if results.get("fleet"):
        labels.append("nginx x%d" % results["fleet"]["hosts"])
        first.append(results["fleet"]["first_s"])
        noop.append(results["fleet"]["noop_s"])
    _pairs(axis, labels, (first, "first converge"), (noop, "no-op re-run"))
    axis.set_ylabel("seconds")
    axis.set_title("playbooks/site.yml")
    axis.legend(fontsize=8)
    _save(figure, directory, "ansible.png", made)
    return made


def render(results, out):
    """Writes the page and its charts; returns (the verdicts as text, the missed ones)."""
    rows = verdicts(results)
    missed = [row for row in rows if not row[4]]
    directory = os.path.join(os.path.dirname(out), "benchmarks")
    made = charts(results, directory)
    size = results["size"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/bench.py) on %s, %s. One run: every number below was measured side by"
        " side in it, and only the ratios compare (absolute numbers on a shared machine are noise). The backend is"
        " the Immich test double (tests/immich_double, a stand-in for Immich, which cannot run here); its"
        " `/_double/sink` reads and hashes the whole body. Each proxy runs in its own Debian 12 container, deployed"
        " by `playbooks/site.yml`, with the client inside the container on loopback."
        % (results["started"], results["machine"]),
        "",
        "## Targets",
        "",
        "| proxy | what | measured | target | |",
        "|---|---|---|---|---|",
    ]
    for kind, what, measured, target, met in rows:
        lines.append("| %s | %s | %s | %s | %s |" % (kind, what, measured, target, "met" if met else "**missed**"))
    lines += ["", "## Uploads", "",
              "A %d MiB multipart upload as the apps send it, at each client speed (paced by the client), to the"
              " double directly, through the collection's proxy and through the same proxy configured as Immich's"
              " reverse-proxy page shows it. Ratio: the direct upload's time over this one's (1.000: as fast as"
              " direct). The proxy's disk writes (`/proc/PID/io` `write_bytes`), CPU time and memory growth are of"
              " all its processes, workers included." % (size // MiB), "",
              "![uploads](benchmarks/uploads.png)", "",
              "| proxy | client | path | result | ratio | CPU s/GiB | wrote to disk | memory growth |",
              "|---|---|---|---|---|---|---|---|"]
    for kind, found in results["kinds"].items():
        for key, result in found["uploads"].items():
            speed, path = key.split("|")
            ratio = _ratio(found["uploads"], speed, path)
            cpu = "" if path == "direct" else "%.2f" % (result["cpu_seconds"] / (result["bytes"] / GiB))
            lines.append("| %s | %s | %s | %s | %.3f | %s | %.1f MiB | %.1f MiB |" % (
                kind, speed, path, _outcome(result), ratio, cpu, result["written_bytes"] / MiB,
                (result["rss_peak"] - result["rss_before"]) / MiB))
        for path, result in found["slow"].items():
            lines.append("| %s | 1 MiB/s, %d s | %s | %s | | | %.1f MiB | %.1f MiB |" % (
                kind, results["slow_seconds"], path if path == "collection" else label(kind, path), _outcome(result),
                result["written_bytes"] / MiB,
                (result["rss_peak"] - result["rss_before"]) / MiB))
    sink = [found["uploads"]["unpaced|direct"] for found in results["kinds"].values()]
    lines += ["", "The sink is not the bottleneck where the direct unpaced upload is faster than the fastest paced"
              " client (2.5 Gbit/s = 312.5 MB/s): here %s." % ", ".join(
                  "%.0f MB/s" % _mbps(result) for result in sink)]
    lines += ["", "## Small requests", "",
              "`wrk -t2 -c16 -d10s` with keep-alive, `GET /api/server/ping`, inside the container.", "",
              "![CPU and latency](benchmarks/cpu-latency.png)", "",
              "| proxy | path | requests/s | p50 | p99 | the proxy's share of p50 |", "|---|---|---|---|---|---|"]
    for kind, found in results["kinds"].items():
        direct, proxied = found["wrk"]["direct"], found["wrk"]["collection"]
        for path, result in (("direct", direct), ("collection", proxied)):
            share = "" if path == "direct" else "%.2f ms" % (proxied["p50_ms"] - direct["p50_ms"])
            lines.append("| %s | %s | %.0f | %.2f ms | %.2f ms | %s |"
                         % (kind, path, result["rps"], result["p50_ms"], result["p99_ms"], share))
    lines += ["", "## A config change under load", "",
              ("The role applies the kind's config change (the behaviour suite's `config_change_vars`) and a second"
               " backend 5 s into two wrk runs of %d s through the proxy, one on keep-alive connections and one on a"
               " new connection for every request, while four websockets are open; each websocket then echoes a"
               " message. On the keep-alive run wrk counts a read or write error where the old configuration's"
               " worker closed an idle connection just as a request was sent on it, which HTTP clients send again"
               " (RFC 9112 9.3.1), but it cannot tell those from a reset in the middle of an answer: they are shown"
               " apart. Every other error of that run, and every error of the new-connection run, is a failed"
               " request." % max([found["reload"].get("load_s", 30) for found in results["kinds"].values()] or [0])),
              "",
              "| proxy | requests | failed | sent as a keep-alive connection closed | websockets dropped |"
              " the role's run |", "|---|---|---|---|---|---|"]
    for kind, found in results["kinds"].items():
        reload = found["reload"]
        lines.append("| %s | %d | %d | %d | %d of %d%s | %.1f s |" % (
            kind, reload["requests"], reload["failed"], reload["keepalive_closed"], reload["websockets_dropped"],
            reload["websockets"], " (said before the reload)" if reload["drop_announced"] else "", reload["role_s"]))
    lines += ["", "## What Ansible costs", "",
              "![Ansible](benchmarks/ansible.png)", "",
              "| proxy | first converge | no-op re-run | share | tasks run / skipped on the no-op path |",
              "|---|---|---|---|---|"]
    for kind, found in results["kinds"].items():
        ansible = found["ansible"]
        lines.append("| %s | %.1f s | %.1f s | %.2f | %d / %d |" % (
            kind, ansible["first_s"], ansible["noop_s"], ansible["noop_s"] / ansible["first_s"],
            ansible["noop_calls"][0], ansible["noop_calls"][1]))
    if results.get("fleet"):
        fleet = results["fleet"]
        lines.append("| nginx, %d hosts (forks %d) | %.1f s | %.1f s | %.2f | |" % (
            fleet["hosts"], fleet["hosts"], fleet["first_s"], fleet["noop_s"], fleet["noop_s"] / fleet["first_s"]))
    before = ["%s %.1f s / %.1f s = %.2f, %d tasks run" % (kind, first, noop, noop / first, calls)
              for kind, (first, noop, calls) in BEFORE["kinds"].items()]
    fleet_first, fleet_noop = BEFORE["fleet"]
    before.append("8 nginx hosts %.1f s / %.1f s (%.2f and %.2f times one host)" % (
        fleet_first, fleet_noop, fleet_first / BEFORE["kinds"]["nginx"][0], fleet_noop / BEFORE["kinds"]["nginx"][1]))
    rounds = len(next(iter(results["kinds"].values()))["ansible"].get("noop_rounds") or [None])
    lines += ["", "%sBefore the no-op path was cut (%s): %s." % (
        "A no-op re-run's time is the median of %d. " % rounds if rounds > 1 else "", BEFORE["run"],
        "; ".join(before))]
    lines += ["", "The slowest tasks of each no-op re-run (`ansible.posix.profile_tasks`):", ""]
    for kind, found in results["kinds"].items():
        slowest = "; ".join("%s %.2f s" % (task, seconds) for task, seconds in found["ansible"]["noop_profile"])
        lines.append("- %s: %s" % (kind, slowest))
    versions = ", ".join("%s %s" % (kind, (re.search(r"\d+\.\d+[.\d]*", found["version"]) or [found["version"]])[0])
                         for kind, found in results["kinds"].items())
    lines += ["", "Versions: %s. Charts: %s." % (versions, ", ".join("docs/benchmarks/" + name for name in made)), ""]
    with open(out, "w") as handle:
        handle.write("\n".join(lines))
    summary = ["%-8s %-62s %-40s %-22s %s" % (kind, what[:62], measured[:40], target, "met" if met else "MISSED")
               for kind, what, measured, target, met in rows]
    return "\n".join(summary), missed
