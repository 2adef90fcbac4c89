"""The ``llmkit`` command, driven as a user drives it: in a subprocess, through stdin/stdout."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmkit.testing import FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent
KEY_VARS = (
    "OPENAI_API_KEY", "OPENAI_API_KEYS", "ANTHROPIC_API_KEY", "ANTHROPIC_API_KEYS", "GOOGLE_API_KEY",
    "GOOGLE_API_KEYS", "GEMINI_API_KEY", "GEMINI_API_KEYS", "GROQ_API_KEY", "GROQ_API_KEYS",
    "LLM_CONFIG_PATH", "LLM_DEFAULT_PROVIDER", "LLM_LOG_LEVEL",
)  # fmt: skip

pytestmark = pytest.mark.timeout(90)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any real keys or settings, plus ``extra``; no TTY anywhere."""
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def llmkit(*args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 60):
    """Run ``python -m llmkit.cli ARGS``; stdin is a pipe, not a terminal."""
    return start(*args, env=env, stdin=stdin).result(timeout)


class Run:
    """A ``python -m llmkit.cli`` process started now and awaited later (so that many overlap)."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str] | None, stdin: str) -> None:
        self.stdin = stdin
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llmkit.cli", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env or clean_env(), cwd=ROOT,
        )  # fmt: skip

    def result(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        try:
            out, err = self.process.communicate(self.stdin, timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)


def start(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> Run:
    return Run(args, env, stdin)


def free_port() -> int:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def runs(server: FakeLLMServer) -> Iterator[dict[str, Run]]:
    """Every slow command, started at once: each one spends seconds importing the SDKs."""
    demo = ["demo", "--requests", "60", "--keys", "2", "--rps", "20"]
    openai_env = clean_env(OPENAI_API_KEY="sk-cli-test-key-1")
    started = {
        "demo": start(*demo),
        "complete_json": start(
            "complete", "--base-url", server.openai_base_url, "--json", "--system", "Be brief.",
            "--temperature", "0.1", "--max-tokens", "50", "Hello from the CLI", env=openai_env),
        "complete_stream": start(
            "complete", "--provider", "anthropic", "--base-url", server.anthropic_base_url, "--stream", "-",
            env=clean_env(ANTHROPIC_API_KEY="sk-ant-cli-test-key-1"), stdin="streamed words arrive"),
        "status": start(
            "status", "--json",
            env=clean_env(OPENAI_API_KEYS="sk-status-key-aaaaaaaaaaaa,sk-status-key-bbbbbbbbbbbb")),
        "chat": start("chat", "--fake",
                      stdin="hello\nMy name is Alice\nstatus\nstress 5\nquit\nthis line is never read\n"),
        "missing_key": start("complete", "--provider", "anthropic", "hi"),
        "unreachable": start("complete", "--base-url", f"http://127.0.0.1:{free_port()}/v1",
                             "--max-retries", "0", "hi", env=openai_env),
    }  # fmt: skip
    yield started
    for run in started.values():
        if run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def test_help_lists_commands_and_exit_codes() -> None:
    from llmkit.cli import build_parser

    text = build_parser().format_help()
    for word in ("demo", "chat", "complete", "status", "serve-fake", "bench", "130", "interrupted"):
        assert word in text


def test_demo_runs_without_key_or_tty(runs: dict[str, Run]) -> None:
    result = runs["demo"].result()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "requests ok / failed   60 / 0" in out
    for label in ("capacity used", "429s from the server", "retries", "tokens in / out", "throughput"):
        assert label in out
    cost = next(line for line in out.splitlines() if line.strip().startswith("cost"))
    assert "$0.000000" not in cost  # a priced model: the cost is not zero
    assert out.count("share of key-") == 2


def test_plot_of_rates_per_key(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from llmkit.cli.plot import plot_rates, rates_per_key

    records = [SimpleNamespace(time=100 + i / 10, key=f"sk-{i % 2}", status=200) for i in range(40)]
    records.append(SimpleNamespace(time=101.0, key="sk-0", status=429))
    grid, series = rates_per_key(records, start=100.0)
    assert grid[0] == 0.0 and len(series) == 2 and max(max(v) for v in series.values()) == pytest.approx(5.0)
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed")
    path = tmp_path / "rates.png"
    plot_rates(records, 100.0, 5.0, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_complete_json_against_fake_server(runs: dict[str, Run], server: FakeLLMServer) -> None:
    result = runs["complete_json"].result()
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["content"] == "Hello from the CLI"
    assert data["provider"] == "openai" and data["model"] == "gpt-4o-mini"
    assert data["usage"]["input_tokens"] > 0 and data["usage"]["output_tokens"] > 0
    assert data["cost"] > 0 and data["key_id"].startswith("key-")
    body = next(r.body for r in server.requests if r.key == "sk-cli-test-key-1")
    assert body["temperature"] == 0.1 and body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}


def test_complete_stream_reads_prompt_from_stdin(runs: dict[str, Run], server: FakeLLMServer) -> None:
    result = runs["complete_stream"].result()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "streamed words arrive"
    assert any(r.stream and r.provider == "anthropic" for r in server.requests)


def test_status_json_never_shows_keys(runs: dict[str, Run]) -> None:
    result = runs["status"].result()
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["provider"] == "openai" and status["total_clients"] == 2
    assert [s["state"] for s in status["client_statuses"]] == ["healthy", "healthy"]
    assert "sk-status" not in result.stdout and status["config_file"] is None


def test_status_table() -> None:
    from llmkit.cli._common import status_table
    from llmkit.client import LLMClient
    from llmkit.config import RateLimit, Settings

    with LLMClient(
        "openai",
        api_keys=["sk-a-123456", "sk-b-123456"],
        settings=Settings(),
        rate_limit=RateLimit(requests_per_minute=60),
    ) as client:
        text = status_table(client.status())
    assert "openai: 2 keys, 2 available" in text
    assert text.count("healthy") == 2 and "requests=60" in text and "sk-a" not in text


def test_chat_through_stdin(runs: dict[str, Run]) -> None:
    result = runs["chat"].result()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "assistant> Hello! This is a test message" in out
    assert "assistant> My name is Alice" in out
    assert "2 keys, 2 available" in out
    assert "stress: 5/5 succeeded" in out and "latency (queueing included) mean" in out
    assert "never read" not in out and out.rstrip().endswith("bye")


def test_chat_keeps_history_and_ends_at_end_of_input(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import io

    from llmkit.cli import main

    lines = "first message\nstress nope\nreset\nsecond message\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    assert main(["chat", "--fake", "--keys", "1"]) == 0
    out = capsys.readouterr().out
    assert "usage: stress N" in out and "(conversation cleared)" in out and out.rstrip().endswith("bye")


def test_serve_fake_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "llmkit.cli", "serve-fake", "--port", "0", "--rpm", "600",
         "--burst-seconds", "1", "--fault-rate", "500=0.0", "--latency", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("READY http://127.0.0.1:"), ready
        url = ready.split()[1]
        assert f"OpenAI base URL:    {url}/v1" in process.stdout.readline()
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ping"}]}
        request = urllib.request.Request(
            url + "/v1/chat/completions", method="POST", data=json.dumps(chat).encode(),
            headers={"content-type": "application/json", "authorization": "Bearer sk-anything"},
        )  # fmt: skip
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            assert json.loads(response.read())["choices"][0]["message"]["content"] == "ping"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_fake_help_shows_its_flags(capsys) -> None:
    from llmkit.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve-fake", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--rpm" in out and "--fault-rate" in out and "exit codes" in out


def test_missing_key_exits_2_naming_the_variables(runs: dict[str, Run]) -> None:
    result = runs["missing_key"].result()
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr and "ANTHROPIC_API_KEYS" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_server_exits_1(runs: dict[str, Run]) -> None:
    result = runs["unreachable"].result()
    assert result.returncode == 1
    assert "NetworkError" in result.stderr and "Traceback" not in result.stderr


def test_bad_config_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from llmkit.cli import main

    config = tmp_path / "llm.yaml"
    config.write_text("pool:\n  acquire_timeout: -5\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-1")
    assert main(["status", "--provider", "openai", "--config", str(config)]) == 2
    assert "acquire_timeout" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys) -> None:
    from llmkit.cli import main

    for argv in (["complete"], ["no-such-command"], ["demo", "--bogus"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert main(["demo", "--requests", "0"]) == 2
    assert main(["bench", "--contenders", "nobody"]) == 2
    assert main([]) == 2
    assert "--requests and --keys must be at least 1" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import llmkit.cli.status as status_command
    from llmkit.cli import main

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(status_command, "main", interrupted)
    assert main(["status"]) == 130


def test_goodput_arithmetic() -> None:
    from llmkit.cli.bench import ideal_seconds
    from llmkit.testing import ServerLimits

    limits = ServerLimits(requests_per_minute=1200)
    # 4 keys x 20/s = 80/s: 300 requests need 300 / 80 s at the enforced rate.
    assert ideal_seconds(limits, 4, {"by_status": {200: 300}}) == pytest.approx(3.75)
    tokens = ServerLimits(requests_per_minute=6000, input_tokens_per_minute=90_000)
    stats = {"by_status": {200: 100}, "input_tokens": 60_000}  # the input tokens bind: 60,000 / 6,000 a s
    assert ideal_seconds(tokens, 4, stats) == pytest.approx(10.0)


# --- a newcomer's stumbles: pipes, bad arguments, messages, Ctrl-C, progress -------------------


def _cli_command(*args: str) -> str:
    return " ".join([sys.executable, "-m", "llmkit.cli", *args])


def test_piping_into_head_ends_quietly() -> None:
    status_env = clean_env(OPENAI_API_KEYS="sk-test-pipe-key-aaaaaaaa,sk-test-pipe-key-bbbbbbbb")
    for command, env, lines in (
        (_cli_command("status", "--json") + " | head -1", status_env, 1),
        (_cli_command("demo", "--requests", "40", "--no-progress") + " | head -2", clean_env(), 2),
    ):
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, cwd=ROOT,
                                timeout=60)  # fmt: skip
        assert len(result.stdout.splitlines()) == lines, result
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_a_pipe_closed_before_the_first_write_exits_141_without_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before llmkit writes a byte
    env = clean_env(OPENAI_API_KEYS="sk-test-pipe-key-aaaaaaaa")
    try:
        result = subprocess.run([sys.executable, "-m", "llmkit.cli", "status", "--json"], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, timeout=60)  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == "", result.stderr


def test_out_of_range_arguments_exit_2(capsys) -> None:
    from llmkit.cli import main

    for argv, message in ((["complete", "hi", "--temperature", "7"], "give a number from 0 to 2"),
                          (["complete", "hi", "--max-tokens", "0"], "at least 1"),
                          (["complete", "hi", "--timeout", "0"], "more than 0"),
                          (["chat", "--fake", "--keys", "x"], "'x' is not a whole number")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_missing_key_and_provider_messages_speak_cli(runs: dict[str, Run], monkeypatch, capsys) -> None:
    from llmkit.cli import main

    text = runs["missing_key"].result().stderr
    assert "export ANTHROPIC_API_KEY=..." in text and "llmkit chat --fake" in text
    assert "api_keys=[" not in text and "provider='" not in text
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(ROOT / "tests")  # no config/llm.yaml here
    assert main(["complete", "hi"]) == 2
    text = capsys.readouterr().err
    assert "give --provider NAME" in text and "llmkit demo" in text and "provider='" not in text


def test_bench_help_and_the_429_share_of_what_was_sent(capsys) -> None:
    from llmkit.cli import main
    from llmkit.cli.bench import Outcome, report, scenarios

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "Anthropic-style input and output tokens/min bind" in " ".join(capsys.readouterr().out.split())
    outcome = Outcome("raw SDK", 352, 48, 10.0, server_429=148, capacity_used=0.5, server_requests=548)
    text = report(scenarios()["requests"], [outcome], requests=400, threads=16, keys=4)
    assert "27.0%" in text and "147" not in text


@pytest.mark.timeout(60)
def test_ctrl_c_during_stress_returns_to_the_prompt() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "llmkit.cli", "chat", "--fake", "--keys", "1", "--rpm", "120"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        cwd=ROOT,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write("stress 500\nhello\nquit\n")
        process.stdin.flush()
        seen = []
        for line in process.stdout:  # progress arrives while the stress runs
            seen.append(line)
            if line.startswith("stress: ") and " done, " in line:
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=40)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "interrupted: " in out and "not sent (cancelled)" in out
    assert "assistant> Hello! This is a test message" in out and out.rstrip().endswith("bye")
