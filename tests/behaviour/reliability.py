# SPDX-License-Identifier: GPL-3.0-or-later
"""The figures of the reliability and security suite, written to docs/reliability.md by the suite itself.

Each test that tries an attack, injects a fault, completes an upload or counts
lost requests adds to the session's Figures (the ``figures`` fixture). At the
end of each run (one per container, molecule's verify) the figures and pytest's
own outcome counts go to .cache/reliability/<container>.json, and
docs/reliability.md is rendered again from every file there, so the page says
exactly what the last runs did. ``make molecule`` starts with an empty folder.
"""
from __future__ import annotations

import collections
import datetime
import fcntl
import glob
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, ".cache", "reliability")
PAGE = os.path.join(ROOT, "docs", "reliability.md")

# The figures, in the order of the page's table: (key, column title).
COLUMNS = [
    ("attacks", "attack requests sent"),
    ("attacks_refused", "refused"),
    ("attacks_normalised", "normalised (RFC 9112)"),
    ("attacks_reached", "reached Immich as sent"),
    ("attacks_failed", "other failures"),
    ("forged", "forged forwarding headers"),
    ("hostile_inputs", "hostile settings tried"),
    ("property_cases", "random settings drawn"),
    ("property_deployed", "accepted and deployed"),
    ("faults", "faults injected"),
    ("faults_recovered", "recovered by the next run"),
    ("switches", "kind switches (ports handed over)"),
    ("switch_outage_s", "longest switch outage a client saw, s"),
    ("in_flight", "upload + websocket kept through a config change"),
    ("in_flight_said", "upload kept, websocket drop said first"),
    ("reload_requests", "new connections during reloads"),
    ("reload_lost", "lost"),
    ("reload_lost_said", "of those, said first by the role"),
    ("uploads", "uploads completed"),
    ("upload_gib", "GiB uploaded"),
    ("pool_requests", "requests during a backend stop"),
    ("pool_lost", "lost"),
]


class Figures:
    """What one run of the suite did, counted where it happens."""

    def __init__(self):
        self.counts = collections.Counter()
        # (attack, outcome) per case: what this proxy did with it
        self.cases = {}

    def add(self, key, amount=1):
        if key not in dict(COLUMNS):
            raise KeyError("%r is not a figure of docs/reliability.md" % key)
        self.counts[key] += amount

    def worst(self, key, value):
        """A figure that keeps its largest value (an outage), not a sum."""
        self.add(key, 0)
        self.counts[key] = max(self.counts[key], value)

    def attack(self, case, outcome):
        """One attack request and what became of it: refused, normalised, or a failure (reached, failed).

        A case tried more than once (several Host headers) keeps its worst outcome."""
        self.add("attacks")
        self.add("attacks_" + outcome)
        worst = ["refused", "normalised", "failed", "reached"]
        if worst.index(outcome) >= worst.index(self.cases.get(case, "refused")):
            self.cases[case] = outcome


def save(figures, kind, container, outcomes):
    """Keep this run's figures and pytest's outcome counts, then render the page from every run kept."""
    os.makedirs(RESULTS, exist_ok=True)
    record = {"kind": kind, "container": container, "outcomes": outcomes,
              "finished": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "figures": dict(figures.counts), "cases": figures.cases}
    # The runs of one scenario finish side by side: one writer at a time, each file replaced whole.
    with open(os.path.join(RESULTS, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = os.path.join(RESULTS, container + ".json")
        with open(path + ".tmp", "w") as handle:
            json.dump(record, handle, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
        records = []
        for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
            with open(path) as handle:
                records.append(json.load(handle))
        with open(PAGE + ".tmp", "w") as handle:
            handle.write(render(records))
        os.replace(PAGE + ".tmp", PAGE)


def _cell(value):
    if isinstance(value, float):
        return "%.1f" % value
    return str(value)


def render(records):
    lines = [
        "# Reliability and security: what the last run did",
        "",
        "<!-- Written by tests/behaviour/reliability.py at the end of each behaviour-suite run; do not edit. -->",
        "",
        "Every figure below is counted by the test that did it (`tests/behaviour`), in real containers, through the",
        "real proxies, in front of the Immich test double (a stand-in for Immich, `tests/immich_double`); cloudflared",
        "is the test-only stand-in (`tests/cloudflared_standin`). `make test` (CI) runs it for every scenario.",
        "",
        "## Per host",
        "",
        "| proxy | host | finished | passed | failed | skipped | "
        + " | ".join(title for _key, title in COLUMNS) + " |",
        "|" + "---|" * (6 + len(COLUMNS)),
    ]
    for record in sorted(records, key=lambda r: (r["kind"], r["container"])):
        outcomes = record["outcomes"]
        lines.append("| %s | %s | %s | %d | %d | %d | %s |" % (
            record["kind"], record["container"], record["finished"], outcomes.get("passed", 0),
            outcomes.get("failed", 0) + outcomes.get("error", 0), outcomes.get("skipped", 0),
            " | ".join(_cell(record["figures"].get(key, 0)) for key, _title in COLUMNS)))
    cases = sorted({case for record in records for case in record["cases"]})
    if cases:
        kinds = sorted({record["kind"] for record in records})
        lines += [
            "",
            "## Attacks, by proxy",
            "",
            "*refused*: the proxy answered 4xx/5xx or closed, nothing reached Immich. *normalised*: the proxy's own",
            "HTTP parser turned the ambiguous request into an unambiguous one, as RFC 9112 allows (section 6.3: the",
            "Transfer-Encoding wins and the Content-Length is removed; section 5.2: an obs-fold is replaced by a",
            "space), and the suite checked that Immich received exactly that and that the request hidden in the",
            "body never reached it. *reached* (it arrived, and the kind may not pass it on) and *failed* (what",
            "arrived was not unambiguous, or the answer was neither a refusal nor a close) fail the suite.",
            "",
            "| attack | " + " | ".join(kinds) + " |",
            "|---|" + "---|" * len(kinds),
        ]
        for case in cases:
            row = []
            for kind in kinds:
                seen = sorted({record["cases"][case] for record in records
                               if record["kind"] == kind and case in record["cases"]})
                row.append(" / ".join(seen) or "n/a")
            lines.append("| %s | %s |" % (case, " | ".join(row)))
    lines.append("")
    return "\n".join(lines)
