"""Drill reports: rows for the terminal table, JSON, and a timeline picture (PNG, matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgha.drill.runner import DrillResult

COLUMNS = ("run", "old leader led etcd", "write outage s", "new leader s", "healthy s", "acked", "lost", "lost LSN B",
           "split brain", "VIP moves", "VIP x2", "safe")


def row(r: DrillResult) -> tuple[Any, ...]:
    led = {True: "yes", False: "no", None: "?"}[r.old_leader_led_etcd]
    return (r.run, led, r.write_outage_s, r.new_leader_after_s, r.healthy_after_s, r.acked_writes,
            r.lost_acked_writes, r.lost_lsn_bytes, r.split_brain_acks + r.old_primary_direct_writes_after_new_leader,
            r.vip_moves, "YES" if r.vip_on_two_hosts else "no", "yes" if r.safe else "NO")


def write_json(results: list[DrillResult], path: Path) -> None:
    path.write_text(json.dumps([r.as_dict() for r in results], indent=2, default=str))


def timeline_png(r: DrillResult, path: Path) -> None:
    """Writes over time (ok / failed), with the fault, leader change, VIP moves and health marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = r.t_fault
    ok = [a.ended - t0 for a in r.vip_attempts if a.ok]
    bad = [a.ended - t0 for a in r.vip_attempts if not a.ok]
    fig, ax = plt.subplots(figsize=(11, 3.6), dpi=100)
    if ok:
        ax.scatter(ok, [1] * len(ok), s=6, color="tab:green", label=f"acknowledged write ({len(ok)})")
    if bad:
        ax.scatter(bad, [0] * len(bad), s=6, color="tab:red", label=f"failed attempt ({len(bad)})")
    marks = [(0.0, "fault", "black"), (r.new_leader_after_s, f"new leader {r.new_leader}", "tab:blue"),
             (r.restored_after_s, "node restored", "tab:gray"), (r.healthy_after_s, "healthy", "tab:green")]
    prev: tuple[str, ...] | None = None
    for s in r.samples:
        if s.vip_holders and prev and s.vip_holders != prev:
            marks.append((s.at - t0, f"VIP → {','.join(s.vip_holders)}", "tab:orange"))
        prev = s.vip_holders or prev
    shown = [(x, label, colour) for x, label, colour in marks if x is not None]
    for i, (x, label, colour) in enumerate(shown):
        ax.axvline(x, color=colour, linestyle="--", linewidth=1)
        ax.text(x, 1.2 + 0.22 * (i % 3), f" {label}", fontsize=8, color=colour, va="bottom")
    ax.set_ylim(-0.3, 1.9)
    ax.set_yticks([0, 1], ["failed", "ok"])
    ax.set_xlabel("seconds since the fault")
    outage = f"{r.write_outage_s:.2f} s" if r.write_outage_s is not None else "n/a"
    ax.set_title(f"pgha drill {r.scenario} ({r.profile} profile{', sync' if r.sync else ''}): write outage {outage}, "
                 f"lost acknowledged writes {r.lost_acked_writes}", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
