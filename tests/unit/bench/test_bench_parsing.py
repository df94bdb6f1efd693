# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark's readings of wrk and of ansible-playbook, and its verdicts, on known output."""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "behaviour"))

import report  # noqa: E402
import upload_client  # noqa: E402

import bench  # noqa: E402

WRK = """Running 10s test @ http://127.0.0.1:80/api/server/ping
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  10.00ms   80.00%
    Req/Sec     6.50k   500.00     7.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%    1.40ms
     90%    1.80ms
     99%    1.02s
  129000 requests in 10.00s, 20.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  12900.00
Transfer/sec:      2.00MB
"""

PROFILE = """PLAY RECAP *********************************************************************
host : ok=20   changed=0    unreachable=0    failed=0    skipped=23   rescued=0    ignored=0

Friday 04 December 2026  23:59:01 +0000 (0:00:00.412)       0:00:05.611 *******
===============================================================================
homelab.immich_proxy.contract : Validate the Immich proxy settings ------ 0.81s
Gathering Facts --------------------------------------------------------- 1.20s
homelab.immich_proxy.nginx : Apply the configuration -------------------- 0.52s
"""


def test_wrk_output_is_read_with_its_units_and_every_error():
    found = bench.parse_wrk(WRK)
    assert found == {"rps": 12900.0, "p50_ms": 0.85, "p99_ms": 1020.0, "requests": 129000, "non_2xx": 5,
                     "connect": 0, "read": 2, "write": 0, "timeout": 1, "socket_errors": 3}


def test_a_clean_wrk_run_has_no_errors():
    clean = "\n".join(line for line in WRK.splitlines() if "errors" not in line and "Non-2xx" not in line)
    found = bench.parse_wrk(clean)
    assert (found["non_2xx"], found["socket_errors"]) == (0, 0)


def test_profile_tasks_lines_slowest_first():
    assert bench.profile_lines(PROFILE) == [
        ("Gathering Facts", 1.2),
        ("homelab.immich_proxy.contract : Validate the Immich proxy settings", 0.81),
        ("homelab.immich_proxy.nginx : Apply the configuration", 0.52)]


def _upload(seconds, ok=True, written=0, cpu=1.0):
    return {"bytes": 1024 ** 3, "seconds": seconds, "ok": ok, "status": 200 if ok else 499, "error": None,
            "written_bytes": written, "cpu_seconds": cpu, "rss_before": 0, "rss_peak": 10 * 1024 ** 2}


def _results(collection_seconds=10.0, documented_ok=True, written=0, dropped=0, announced=False, noop=2.0,
             failed=0):
    uploads = {}
    for speed in ("1 Gbit/s", "2.5 Gbit/s", "unpaced"):
        uploads[speed + "|direct"] = _upload(10.0)
        uploads[speed + "|collection"] = _upload(collection_seconds, written=written)
        uploads[speed + "|documented"] = _upload(12.0, ok=documented_ok)
    wrk = {"rps": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0, "requests": 10000, "non_2xx": 0, "socket_errors": 0}
    return {"size": 1024 ** 3, "slow_seconds": 75, "speeds": ["1 Gbit/s", "2.5 Gbit/s", "unpaced"], "fleet": None,
            "kinds": {"nginx": {"uploads": uploads, "slow": {},
                                "wrk": {"direct": wrk, "collection": wrk},
                                "reload": {"requests": 10000, "failed": failed, "keepalive_closed": 3,
                                           "role_s": 5.0, "changed": 1, "websockets": 4,
                                           "websockets_dropped": dropped, "drop_announced": announced},
                                "ansible": {"first_s": 10.0, "noop_s": noop, "noop_changed": 0}}}}


def _missed(results):
    return [what for _kind, what, _measured, _target, met in report.verdicts(results) if not met]


def test_every_target_met():
    assert _missed(_results()) == []


def test_each_missed_target_is_named():
    assert _missed(_results(collection_seconds=10.5)) == ["upload at 1 Gbit/s against direct"]
    assert _missed(_results(written=20 * 1024 ** 2)) == ["bytes the proxy wrote to disk during an upload"]
    assert _missed(_results(dropped=1)) == ["websockets dropped by the reload"]
    assert _missed(_results(failed=1)) == ["requests failed while the role applied a change under load"]
    refused = _results()
    refused["kinds"]["nginx"]["reload"]["role_error"] = "immich_proxy_http_port 80 is already in use"
    assert _missed(refused) == ["the role's run applying a change under load"]
    assert _missed(_results(noop=3.0)) == ["no-op re-run of site.yml against the first converge"]


def test_a_drop_the_role_announced_is_not_a_miss_and_a_failed_documented_upload_is_beaten():
    assert _missed(_results(dropped=4, announced=True, documented_ok=False)) == []


def test_wrk_latencies_in_minutes_and_a_missing_line_is_an_error():
    assert bench.parse_wrk(WRK.replace("1.02s", "1.50m"))["p99_ms"] == 90000.0
    try:
        bench.parse_wrk(WRK.replace("Requests/sec", "Reqs"))
    except bench.Failed as exc:
        assert "Requests/sec" in str(exc)
    else:
        raise AssertionError("a wrk output without its rate was read")


def test_the_median_round_is_kept_with_every_rounds_time():
    rounds = [_upload(12.0), _upload(10.0), _upload(11.0)]
    chosen = bench.median_of(rounds)
    assert (chosen["seconds"], chosen["rounds"], chosen["ok"]) == (11.0, [12.0, 10.0, 11.0], True)
    rounds[0] = _upload(9.0, ok=False)
    assert bench.median_of(rounds)["ok"] is False


def test_no_ratio_where_the_direct_upload_failed_and_beating_the_documented_config_is_strict():
    results = _results()
    results["kinds"]["nginx"]["uploads"]["1 Gbit/s|direct"] = _upload(30.0, ok=False)
    assert _missed(results) == ["upload at 1 Gbit/s against direct"]
    assert _missed(_results(collection_seconds=12.0)) == [
        "upload at 1 Gbit/s against direct", "upload at 2.5 Gbit/s against direct",
        "unpaced upload (one round) against Immich's documented config"]


def test_the_fleet_is_held_to_both_targets_against_one_host():
    results = _results()
    results["fleet"] = {"hosts": 8, "first_s": 24.0, "noop_s": 5.5, "noop_changed": 0}
    assert _missed(results) == ["no-op re-run of 8 hosts against one"]
    results["fleet"].update(first_s=26.0, noop_s=4.0)
    assert _missed(results) == ["first converge of 8 hosts against one"]


def test_the_fleet_row_says_what_the_machine_s_cores_allowed():
    results = _results()
    results["fleet"] = {"hosts": 8, "first_s": 40.0, "first_cpu_s": 76.0, "noop_s": 4.0, "noop_changed": 0}
    results["cores"] = 2
    row = next(row for row in report.verdicts(results) if row[1] == "first converge of 8 hosts against one")
    assert row[2] == ("40.0 s / 10.0 s = 4.00; the run kept the machine's 2 cores 95% busy (76 CPU-seconds): on 2 "
                      "cores that work takes at least 38.0 s, 3.80 times one host") and row[4] is False
    results["fleet"]["noop_cpu_s"] = 7.2
    row = next(row for row in report.verdicts(results) if row[1] == "no-op re-run of 8 hosts against one")
    assert row[2] == ("4.0 s / 2.0 s = 2.00; the run kept the machine's 2 cores 90% busy (7 CPU-seconds): on 2 "
                      "cores that work takes at least 3.6 s, 1.80 times one host") and row[4] is True
    del results["cores"]
    row = next(row for row in report.verdicts(results) if row[1] == "first converge of 8 hosts against one")
    assert row[2] == "40.0 s / 10.0 s = 4.00"


def test_the_machine_s_busy_cpu_leaves_out_idle_and_io_wait(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
    stat.write_text("cpu  100 20 30 5000 700 4 6 40 9 9\ncpu0 1 2 3 4 5 6 7 8 9 9\n")
    assert bench.busy_cpu_seconds(str(stat)) == 200 / os.sysconf("SC_CLK_TCK")


def test_a_role_run_that_outlasts_the_load_proved_nothing():
    results = _results()
    results["kinds"]["nginx"]["reload"].update(load_s=60, role_ended_s=59.5, covered=False)
    assert _missed(results) == ["the role's run applying a change under load"]


def test_a_paced_client_does_not_make_up_for_a_stall(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(upload_client.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(upload_client.time, "sleep", lambda seconds: clock.update(now=clock["now"] + seconds))
    rate = len(upload_client.BLOCK)  # one block a second
    pieces = upload_client.body(b"head", 4 * rate, b"tail", rate)
    next(pieces)  # the head
    next(pieces)  # block 1, due at 1 s
    clock["now"] += 5.0  # the proxy stalls the client for 5 s
    for _piece in pieces:
        pass
    # blocks 2 to 4 still take a second each after the stall: 1 + 5 + 3
    assert clock["now"] == 9.0


def _rounds(times, cpus=None, ok=True):
    result = _upload(sorted(times)[len(times) // 2], ok=ok)
    result["rounds"] = list(times)
    if cpus is not None:
        result["cpu_rounds"] = list(cpus)
    return result


def test_unpaced_uploads_are_compared_round_by_round():
    table = [
        # ours, theirs, verdict
        (_rounds([10, 11, 12]), _rounds([11, 12, 13]), "faster"),
        (_rounds([10, 13, 12]), _rounds([11, 12, 13]), "even"),
        (_rounds([12, 13, 14]), _rounds([11, 12, 13]), "slower"),
        # less CPU in every round and quicker in one: leaner; in no round: slower all the same
        (_rounds([10, 13, 14], [1, 1, 1]), _rounds([11, 12, 13], [2, 2, 2]), "leaner"),
        (_rounds([12, 13, 14], [1, 1, 1]), _rounds([11, 12, 13], [2, 2, 2]), "slower"),
        (_rounds([10, 13, 12], [1, 3, 1]), _rounds([11, 12, 13], [2, 2, 2]), "even"),
        # rounds that do not pair: the medians are the one pair
        (_rounds([10, 11, 12, 13, 14]), _rounds([13, 14, 15]), "faster"),
        (_rounds([10, 20, 30]), _upload(15.0), "slower"),
        # a failed path loses; both failed is no win
        (_rounds([10, 11, 12], ok=False), _rounds([11, 12, 13]), "slower"),
        (_rounds([10, 11, 12]), _rounds([11, 12, 13], ok=False), "faster"),
        (_rounds([10, 11, 12], ok=False), _rounds([11, 12, 13], ok=False), "failed"),
    ]
    for ours, theirs, verdict in table:
        assert report.compare(ours, theirs)[0] == verdict, (ours.get("rounds"), theirs.get("rounds"))


def test_the_comparison_shows_the_median_cpu_of_the_rounds_compared():
    _verdict, measured = report.compare(_rounds([10, 13, 14], [1, 4, 2]), _rounds([11, 12, 13], [5, 6, 7]))
    assert "quicker in 1 of 3 rounds, less CPU in 3 of 3 (median 2.00 against 6.00 CPU s/GiB)" in measured
