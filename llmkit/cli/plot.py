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
    """Write a PNG of each key's request rate, one panel per key, with the per-key ``limit`` dashed.

    The y axis fits the highest rate (the opening burst included), and each key
    has its own panel so that no line hides another.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    grid, series = rates_per_key(records, start)
    rows = max(1, len(series))
    fig, axes = plt.subplots(rows, 1, figsize=(8, 1.2 + 1.6 * rows), sharex=True, sharey=True, squeeze=False)
    peak = max([limit, *(max(values, default=0.0) for values in series.values())])
    rejected = [r for r in records if r.status == 429 and r.time >= start]
    for ax, (key, values) in zip(axes[:, 0], series.items() or [("no requests", [])]):
        if values:
            ax.plot(grid, values, linewidth=1.2, label=f"{key} requests/s")
        ax.axhline(limit, color="black", linestyle="--", linewidth=1, label=f"limit per key ({limit:g}/s)")
        _mark_rejections(ax, [r.time - start for r in rejected if _key_of(r) == key], limit)
        ax.set_ylim(bottom=0, top=peak * 1.1)
        ax.set_ylabel("req/s")
        ax.legend(loc="upper right", fontsize="x-small")
    axes[-1, 0].set_xlabel("seconds since the batch started (1 s sliding window)")
    fig.suptitle("llmkit demo: requests per second, per key")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _key_of(record: Any) -> str:
    from llmkit.redaction import fingerprint

    return fingerprint(record.key) if record.key else ""


def _mark_rejections(ax: Any, times: list[float], limit: float) -> None:
    if times:
        ax.plot(times, [limit] * len(times), "rx", label=f"429 ({len(times)})")
