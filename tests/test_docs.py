"""The documentation builds (``mkdocs build --strict``) and stays true to the code."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _needs(module: str) -> None:
    """Skip without ``module``, except under CI, where a missing tool is a failure."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{module} is not installed: CI installs it with the dev extra")
        pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")


@pytest.mark.timeout(120)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    _needs("mkdocs")
    _needs("mkdocstrings")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, cwd=ROOT, timeout=110,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "LLMClient" in api and "complete" in api  # the reference came from the docstrings


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.glob("*.md"):
        assert page.name in nav, f"{page.name} is not in mkdocs.yml's nav"


def test_configuration_page_names_every_setting() -> None:
    from llmkit.config import LLMConfig, PoolConfig, RateLimit
    from llmkit.config.settings import KEY_ENV_VARS, GlobalSettings, ProviderSettings

    text = (DOCS / "configuration.md").read_text()
    for variables in KEY_ENV_VARS.values():
        for variable in variables:
            assert f"`{variable}`" in text, variable
    for variable in ("LLM_CONFIG_PATH", "LLM_LOG_LEVEL", "LLM_DEFAULT_PROVIDER", "LLMKIT_CACHE_DIR"):
        assert f"`{variable}`" in text, variable
    for model in (GlobalSettings, ProviderSettings, RateLimit, LLMConfig, PoolConfig):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{model.__name__}.{name} is not documented"


def test_provider_capability_table_matches_the_adapters() -> None:
    from llmkit.providers import PROVIDER_NAMES, provider_class

    lines = (DOCS / "providers.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| provider | streaming"))
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in PROVIDER_NAMES and len(cells) == len(columns) + 1:
            rows[cells[0]] = dict(zip(columns, cells[1:]))
    assert set(rows) == set(PROVIDER_NAMES)
    for name, row in rows.items():
        capabilities = provider_class(name).capabilities
        for column, value in row.items():
            assert getattr(capabilities, column) == (value == "yes"), f"{name}: {column}"


def test_cli_page_documents_every_command_and_exit_code() -> None:
    from llmkit.cli import COMMANDS

    text = (DOCS / "cli.md").read_text()
    for command in COMMANDS:
        assert f"## llmkit {command}" in text, command
    for code in ("0", "1", "2", "130"):
        assert re.search(rf"^\| {code} \|", text, re.M), code


def _runnable_blocks() -> list[tuple[str, int, str]]:
    """The docs' Python blocks that need no key: they run against the fake server or the mock."""
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        for index, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)):
            if "FakeLLMServer" in code or "MockLLMClient" in code:
                blocks.append((page.name, index, code))
    return blocks


@pytest.mark.parametrize(("page", "index", "code"), _runnable_blocks(), ids=lambda v: str(v)[:20])
def test_runnable_examples_print_what_their_comments_say(
    page: str, index: int, code: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(compile(code, f"{page}[{index}]", "exec"), {"__name__": "docs_example"})
    printed = capsys.readouterr().out.splitlines()
    expected = [m.group(1).strip() for m in re.finditer(r"print\(.*\)\s+#\s*(.*)", code)]
    assert len(printed) >= len(expected), f"{page}: printed {printed}, expected {expected}"
    for line, comment in zip(printed, expected):
        output = comment.split("  (")[0]  # what follows two spaces and "(" explains it
        assert output in line, f"{page}: printed {line!r}, the comment says {comment!r}"
