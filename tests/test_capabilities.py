"""docs/providers.md's capability table matches what every registered adapter declares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from llmkit.config.settings import PROVIDERS
from llmkit.providers import PROVIDER_NAMES, provider_class
from llmkit.providers.base import Capabilities

PAGE = Path(__file__).resolve().parent.parent / "docs" / "providers.md"
# A cell says yes or no; "best-effort" is a yes with a caveat explained under the table.
VALUES = {"yes": True, "best-effort": True, "no": False}


def capability_table() -> dict[str, dict[str, bool]]:
    """The first markdown table of the page whose header starts with 'provider', as booleans."""
    lines = [line.strip() for line in PAGE.read_text(encoding="utf-8").splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("| provider |") and "streaming" in line)
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows: dict[str, dict[str, bool]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = {
            column.replace(" ", "_").replace("-", "_").lower(): VALUES[cell.lower()]
            for column, cell in zip(header[1:], cells[1:])
        }
    return rows


def test_columns_are_the_capability_fields() -> None:
    fields = [f.name for f in dataclasses.fields(Capabilities)]
    for row in capability_table().values():
        assert list(row) == fields


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_every_registered_provider_has_a_matching_row(name: str) -> None:
    table = capability_table()
    assert name in table, f"docs/providers.md has no row for {name}"
    assert table[name] == dataclasses.asdict(provider_class(name).capabilities)


def test_rows_name_only_known_providers() -> None:
    assert set(capability_table()) <= set(PROVIDERS)
