"""Draw docs/bench-redis.png from docs/bench-redis.json (run by the harness with the plot venv).

bench/.venvs/plot/bin/python bench/peers/plot.py docs/bench-redis.json docs/bench-redis.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend

PANELS: list[tuple[str, str, list[tuple[str, str, str]]]] = [
    (
        "Enqueue (jobs/s, higher is better)",
        "jobs/s",
        [("enqueue_single", "jobs_per_s", "one call"), ("enqueue_bulk", "jobs_per_s", "bulk")],
    ),
    (
        "Drain 20,000 no-op jobs (jobs/s, higher is better)",
        "jobs/s",
        [
            ("drain_default", "jobs_per_s", "1 proc, default"),
            ("drain_tuned", "jobs_per_s", "1 proc, tuned"),
            ("drain_per_core", "jobs_per_s", "1 proc per core"),
        ],
    ),
    (
        "Enqueue-to-start latency at 100 jobs/s (ms, lower is better; log scale)",
        "ms",
        [("latency", "p50_ms", "p50"), ("latency", "p95_ms", "p95"), ("latency", "p99_ms", "p99")],
    ),
]


def main(source: str, target: str) -> None:
    data: dict[str, Any] = json.loads(Path(source).read_text())
    results: dict[str, dict[str, Any]] = data["results"]
    peers = list(results)
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(11, 12))
    for ax, (title, unit, series) in zip(axes, PANELS, strict=True):
        width = 0.8 / len(series)
        for i, (key, field, label) in enumerate(series):
            xs, heights = [], []
            for j, peer in enumerate(peers):
                value = results[peer].get(key, {}).get(field)
                if value is not None:
                    xs.append(j + (i - (len(series) - 1) / 2) * width)
                    heights.append(value)
            ax.bar(xs, heights, width, label=label)
        ax.set_xticks(range(len(peers)), peers)
        ax.set_title(title)
        ax.set_ylabel(unit)
        if unit == "ms":
            ax.set_yscale("log")
        ax.legend(fontsize="small")
        ax.grid(axis="y", alpha=0.3)
    machine = data["machine"]
    fig.suptitle(
        f"taskmill vs peers on Redis {data.get('redis_version', '')}, "
        f"{machine['cores']} cores, {machine['python']} (missing bar: not measured)"
    )
    fig.tight_layout()
    fig.savefig(target, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
