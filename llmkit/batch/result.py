"""What ``client.batch`` returns: :class:`BatchResult`, :class:`ItemError` and :class:`BatchInterrupted`.

Defined here, apart from :mod:`llmkit.batch` which runs batches, so that
:mod:`llmkit.batch.checkpoint` can build results without importing the runner; all
three stay importable from :mod:`llmkit.batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, overload

from llmkit.types import Response, Usage
from llmkit.wording import plural

__all__ = ["BatchInterrupted", "BatchResult", "ItemError"]


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the batch; ``result`` holds what finished (``None`` where not)."""

    def __init__(self, result: BatchResult) -> None:
        items = plural(len(result), "item")
        super().__init__(f"Batch interrupted: {result.done} of {items} done, {result.pending} not run")
        self.result = result


@dataclass(frozen=True, slots=True)
class ItemError:
    """The slot of an item that failed. Falsy, so ``[r for r in result if r]`` keeps answers.

    ``exception`` is the error itself (``None`` when loaded from a checkpoint).
    """

    id: Any
    index: int
    type: str
    message: str
    status_code: int | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    ok: ClassVar[bool] = False

    def __bool__(self) -> bool:
        return False


class BatchResult(Sequence[Any]):
    """Per-item results in input order: a Response, the parsed model, an ItemError, or None (not run)."""

    def __init__(self, ids: list[Any], values: list[Any], responses: list[Response | None], skipped: int):
        self.ids = ids
        self._values = values
        self.responses = responses
        self.skipped = skipped

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return (
            f"BatchResult({plural(len(self), 'item')}: {self.succeeded} ok, {self.failed} failed, "
            f"{self.pending} not run, {self.skipped} from checkpoint)"
        )

    @property
    def errors(self) -> list[ItemError]:
        return [v for v in self._values if isinstance(v, ItemError)]

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.responses if r is not None)

    @property
    def failed(self) -> int:
        return len(self.errors)

    @property
    def done(self) -> int:
        return sum(1 for v in self._values if v is not None)

    @property
    def pending(self) -> int:
        """Items that did not run (the batch was interrupted or stopped at an error)."""
        return len(self) - self.done

    @property
    def usage(self) -> Usage:
        """Tokens of every answer here, those loaded from the checkpoint included."""
        return sum((r.usage for r in self.responses if r is not None), Usage())

    @property
    def cost(self) -> float | None:
        """US dollars summed over the answers whose cost is known; None when none is."""
        costs = [r.cost for r in self.responses if r is not None and r.cost is not None]
        return sum(costs) if costs else None
