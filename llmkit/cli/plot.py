"""Requests per second per key over time, against the per-key limit (matplotlib)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from llmkit.cli._common import CLIError

__all__ = ["plot_rates", "rates_per_key", "require_matplotlib"]


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError(
            "--plot needs matplotlib, which is not installed: pip install 'llmkit[plot]'"
        ) from None


def rates_per_key(
    records: Sequence[Any], start: float, window: float = 1.0, step: float = 0.1
) -> tuple[list[float], dict[str, list[float]]]:
    """Sliding-window rates: for each key, admitted requests per second over the last ``window``.

    ``records`` are FakeLLMServer request records (``time``, ``key``,
    ``status``); only answered chat requests (status 200) count.
    """
    from llmkit.redaction import fingerprint

    times: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.status == 200 and r.key and r.time >= start:
            times[fingerprint(r.key)].append(r.time - start)
    end = max((t for ts in times.values() for t in ts), default=0.0) + step
    grid = [i * step for i in range(int(end / step) + 1)]
    series = {}
    for key, ts in sorted(times.items()):
        ts.sort()
        series[key] = [sum(1 for t in ts if at - window < t <= at) / window for at in grid]
    return grid, series


def plot_rates(records: Sequence[Any], start: float, limit: float, path: str) -> None:
    """Write a PNG of each key's request rate with the per-key ``limit`` as a dashed line."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    grid, series = rates_per_key(records, start)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, values in series.items():
        ax.plot(grid, values, label=key, linewidth=1.2)
    ax.axhline(limit, color="black", linestyle="--", linewidth=1, label=f"limit per key ({limit:g}/s)")
    rejected = [r.time - start for r in records if r.status == 429 and r.time >= start]
    if rejected:
        ax.plot(rejected, [limit] * len(rejected), "rx", label=f"429 ({len(rejected)})")
    ax.set_xlabel("seconds since the batch started")
    ax.set_ylabel("requests/s (1 s sliding window)")
    ax.set_title("llmkit demo: requests per second per key")
    ax.set_ylim(bottom=0, top=limit * 1.4)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
