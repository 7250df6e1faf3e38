"""The chaos report: report.json (figures, verdict, the schedule to replay), history.jsonl (every
acknowledgement, fault and sample, one per line) and timeline.png (matplotlib, as the drills' pictures)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pgha.drill.chaos import ChaosResult
from pgha.drill.schedule import KINDS, Step
from pgha.errors import UsageError


def write(r: ChaosResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(r.as_dict(), indent=2, default=str))
    with (out / "history.jsonl").open("w") as f:
        for kind, items in (("ack", r.history.acks), ("fault", r.history.faults), ("sample", r.history.samples)):
            for item in items:
                f.write(json.dumps({"type": kind, **asdict(item)}) + "\n")
    if r.history.samples or r.history.acks:
        timeline_png(r, out / "timeline.png")


def load_replay(path: str) -> dict[str, Any]:
    """What a report says to replay: its seed, faults, mode and the steps it ran, as :class:`Step`."""
    try:
        data = json.loads(Path(path).read_text())
        data["steps"] = [Step.from_dict(s) for s in data["schedule"]]
        _ = [data[k] for k in ("seed", "faults", "sync", "overlap")]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a chaos report to replay ({type(exc).__name__}: {exc})",
                         hint="pass the report.json a `pgha drill chaos --report DIR` run wrote") from None
    if not data["steps"]:
        raise UsageError(f"{path}: the report's run injected no fault: nothing to replay")
    return data


def summary_rows(r: ChaosResult) -> list[tuple[Any, ...]]:
    """One row per fault kind: how many, client outage median / worst, healed after (worst)."""
    healed: dict[str, list[float]] = {}
    for f in r.history.faults:
        healed.setdefault(f.kind, []).append(f.healed - f.start if f.healed else float("inf"))
    return [(o.kind, o.faults, o.median_s, o.worst_s, round(max(healed.get(o.kind, [0.0])), 1))
            for o in r.verdict.outages]


COLUMNS = ("fault", "runs", "outage median s", "outage worst s", "healed worst s")


def timeline_png(r: ChaosResult, path: Path) -> None:
    """Faults as bands, each writer's acknowledged seconds, leader changes and VIP moves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = r.started
    writers = sorted({a.writer for a in r.history.acks})
    fig, ax = plt.subplots(figsize=(14, 1.6 + 0.45 * (len(writers) + 2)), dpi=100)
    colours = {k: f"C{i}" for i, k in enumerate(KINDS)}
    shown: set[str] = set()
    for f in r.history.faults:
        kind = f.kind.split("+")[0]
        end = (f.healed or f.restored) - t0
        ax.axvspan(f.start - t0, f.restored - t0, color=colours.get(kind, "grey"), alpha=0.35,
                   label=kind if kind not in shown else None)
        ax.axvspan(f.restored - t0, end, color=colours.get(kind, "grey"), alpha=0.12)
        shown.add(kind)
    for i, w in enumerate(writers):
        seconds = sorted({int(a.acked - t0) for a in r.history.acks if a.writer == w})
        ax.broken_barh(_runs(seconds), (i - 0.3, 0.6), color="tab:green")
    y_leader, y_vip = len(writers), len(writers) + 1
    for t, name in r.leader_changes():
        ax.axvline(t - t0, color="tab:blue", linewidth=0.8, linestyle="--")
        ax.text(t - t0, y_leader, name, fontsize=7, color="tab:blue", rotation=90, va="center")
    for t, holders in r.vip_moves():
        ax.plot([t - t0], [y_vip], marker="v", color="tab:orange" if "," not in holders else "tab:red")
    ax.set_yticks(range(len(writers) + 2), [*writers, "leader", "VIP"])
    ax.set_ylim(-0.7, len(writers) + 1.7)
    ax.set_xlim(0, max(1.0, r.ended - t0))
    ax.set_xlabel("seconds since the start (bands: fault held, then until healed; green: seconds with acks)")
    v = r.verdict
    ax.set_title(f"pgha drill chaos seed {r.seed} ({r.profile} profile{', sync' if r.sync else ''}): "
                 f"availability {v.availability}, lost {len(v.lost)}, split brain {len(v.split_brain)}, "
                 f"stale {len(v.stale)}, VIP x2 {len(v.vip_on_two)}", fontsize=10)
    if shown:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _runs(seconds: list[int]) -> list[tuple[int, int]]:
    """Consecutive seconds as (start, length) bars."""
    out: list[list[int]] = []
    for s in seconds:
        if out and s == out[-1][0] + out[-1][1]:
            out[-1][1] += 1
        else:
            out.append([s, 1])
    return [(a, b) for a, b in out]
