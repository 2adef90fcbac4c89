"""Every example in examples/ runs against a FakeLLMServer, with no API key."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from llmkit.testing import FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
KEY_VARS = ("OPENAI_API_KEY", "OPENAI_API_KEYS", "ANTHROPIC_API_KEY", "ANTHROPIC_API_KEYS", "LLM_CONFIG_PATH",
            "LLM_DEFAULT_PROVIDER")  # fmt: skip
KEY = "sk-example-test-key"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def example_env(server: FakeLLMServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    env.update(LLMKIT_EXAMPLE_BASE_URL=server.openai_base_url, OPENAI_API_KEY=KEY)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@pytest.fixture(scope="module")
def scripts(server: FakeLLMServer) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """The runnable scripts, started together (each spends seconds importing the SDK)."""
    started = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=example_env(server),
            cwd=ROOT,
        )
        for name in ("script.py", "asyncio_program.py")
    }
    yield started
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    return out


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def used_key(server: FakeLLMServer, prompt: str) -> bool:
    return any(r.key == KEY and prompt in str(r.body) for r in server.requests)


def test_script(scripts: dict[str, subprocess.Popen[str]], server: FakeLLMServer) -> None:
    out = finish(scripts["script.py"])
    assert "answer: What is the capital of France?" in out
    assert "concurrent: ['Give me fact number 0'" in out
    assert "pool: 1 keys, 1 available" in out
    assert used_key(server, "Give me fact number 4")


def test_asyncio_program(scripts: dict[str, subprocess.Popen[str]], server: FakeLLMServer) -> None:
    out = finish(scripts["asyncio_program.py"])
    assert "answer: Hello from asyncio" in out
    assert "gathered: ['Question 0', 'Question 1', 'Question 2', 'Question 3', 'Question 4']" in out
    assert "streamed: Streaming works in asyncio too" in out
    assert used_key(server, "Streaming works")


def test_flask_app(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("flask")
    for name, value in example_env(server).items():
        monkeypatch.setenv(name, value)
    module = load("flask_app")
    try:
        web = module.app.test_client()
        reply = web.post("/complete", json={"prompt": "Hello Flask"})
        assert reply.status_code == 200
        assert reply.get_json()["content"] == "Hello Flask" and reply.get_json()["cost"] > 0
        assert web.post("/complete", json={}).status_code == 400
        assert web.get("/status").get_json()["total_clients"] == 1
        assert module.get_client() is module.get_client()  # one client per process
    finally:
        if module._client is not None:
            module._client.close()
    assert used_key(server, "Hello Flask")


def test_django_view(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("django")
    for name, value in example_env(server).items():
        monkeypatch.setenv(name, value)
    module = load("django_view")
    import django
    from django.test import Client
    from django.test.utils import override_settings

    django.setup()
    try:
        with override_settings(ROOT_URLCONF=module):
            web = Client()
            reply = web.get("/complete", {"prompt": "Hello Django"})
            assert reply.status_code == 200, reply.content
            assert reply.json()["content"] == "Hello Django"
            assert web.get("/complete").status_code == 400
            assert web.get("/status").json()["total_clients"] == 1
    finally:
        if module._client is not None:
            module._client.close()
    assert used_key(server, "Hello Django")


def test_notebook(server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for name, value in example_env(server).items():
        monkeypatch.setenv(name, value)  # the kernel inherits this environment
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=90, kernel_name="python3", resources={
        "metadata": {"path": str(ROOT)}}).execute()  # fmt: skip
    text = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )  # fmt: skip
    assert "What is the capital of France?" in text
    assert "BatchResult(40 items: 40 ok, 0 failed" in text
    assert "healthy" in text
    assert used_key(server, "Summarize item 39")
