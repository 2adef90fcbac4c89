"""The fake server's batch APIs, read by the official SDKs and checked against their own types.

OpenAI Files and Batches, Anthropic Message Batches, Gemini Batch Mode (inline and file):
shapes, the time scale, cancel, lists, faults, the queue limit, keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
import requests
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse
from openai.types import Batch, FileObject

from llmkit.testing import BatchFault, FakeLLMServer

KEY = "sk-test-fake-1"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(batch_seconds=600, batch_time_scale=2000) as srv:  # a batch takes 0.3 s
        yield srv


def wait_until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def openai_lines(n: int, model: str = "gpt-4o-mini") -> bytes:
    return b"".join(
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": {
            "model": model, "messages": [{"role": "user", "content": f"hello {i}"}]}}).encode()
        + b"\n"
        for i in range(n)
    )  # fmt: skip


# -- OpenAI ------------------------------------------------------------------------------------------------


def test_openai_files_and_batches_through_the_sdk(server: FakeLLMServer) -> None:
    client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)
    upload = client.files.create(file=("in.jsonl", openai_lines(4), "application/jsonl"), purpose="batch")
    assert FileObject.model_validate(upload.model_dump()).purpose == "batch" and upload.bytes > 0
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "x"})  # fmt: skip
    assert batch.status == "validating" and batch.metadata == {"run": "x"}
    assert wait_until(lambda: client.batches.retrieve(batch.id).status == "in_progress")
    done = wait_until(lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b)
    Batch.model_validate(done.model_dump())
    assert done.request_counts is not None and (done.request_counts.total, done.request_counts.completed) == (
        4,
        4,
    )
    assert done.completed_at is not None and done.error_file_id is None
    lines = [
        json.loads(line) for line in client.files.content(done.output_file_id or "").content.splitlines()
    ]
    assert sorted(line["custom_id"] for line in lines) == ["r0", "r1", "r2", "r3"]
    reply = next(line for line in lines if line["custom_id"] == "r2")["response"]
    assert reply["status_code"] == 200 and reply["body"]["choices"][0]["message"]["content"] == "hello 2"
    assert [b.id for b in client.batches.list(limit=10)] == [batch.id]


def test_openai_expired_cancelled_and_failed_batches(server: FakeLLMServer) -> None:
    client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)

    def submit(data: bytes) -> str:
        upload = client.files.create(file=("in.jsonl", data, "application/jsonl"), purpose="batch")
        return client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                     completion_window="24h").id  # fmt: skip

    server.add_batch_fault(BatchFault(expire_after=0.5, error_every=2, error_status=429))
    expired = wait_until(lambda: (b := client.batches.retrieve(submit_once(submit, openai_lines(4)))).status
                         == "expired" and b)  # fmt: skip
    errors = [
        json.loads(line) for line in client.files.content(expired.error_file_id or "").content.splitlines()
    ]
    by_id = {line["custom_id"]: line for line in errors}
    assert by_id["r1"]["response"]["status_code"] == 429 and by_id["r1"]["error"] is None
    assert by_id["r3"]["error"]["code"] == "batch_expired" and by_id["r3"]["response"] is None
    mixed = openai_lines(1) + openai_lines(1, model="gpt-4o").replace(b'"r0"', b'"other"')
    failed = wait_until(
        lambda: (b := client.batches.retrieve(submit_once(submit, mixed))).status == "failed" and b
    )
    assert failed.errors is not None and failed.errors.data and failed.errors.data[0].code == "model_mismatch"
    cancelled = submit(openai_lines(4))
    assert client.batches.cancel(cancelled).status == "cancelling"
    assert wait_until(lambda: client.batches.retrieve(cancelled).status == "cancelled")


_submitted: dict[bytes, str] = {}


def submit_once(submit: Any, data: bytes) -> str:
    if data not in _submitted:
        _submitted[data] = submit(data)
    return _submitted[data]


def test_openai_queue_limit_fails_the_batch_as_token_limit_exceeded() -> None:
    with FakeLLMServer(batch_seconds=0, batch_queue_limit=3) as srv:
        client = openai.OpenAI(api_key=KEY, base_url=srv.openai_base_url, max_retries=0)
        upload = client.files.create(file=("in.jsonl", openai_lines(4), "application/jsonl"), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")  # fmt: skip
        done = wait_until(lambda: (b := client.batches.retrieve(batch.id)).status == "failed" and b)
    assert done.errors is not None and done.errors.data is not None
    assert done.errors.data[0].code == "token_limit_exceeded" and "Enqueued token limit" in str(
        done.errors.data[0].message
    )


# -- Anthropic -----------------------------------------------------------------------------------------------


def test_anthropic_message_batches_through_the_sdk(server: FakeLLMServer) -> None:
    client = anthropic.Anthropic(api_key=KEY, base_url=server.anthropic_base_url, max_retries=0)
    params = {"model": "claude-3-5-haiku-latest", "max_tokens": 50}
    requests_ = [{"custom_id": f"r-{i}", "params": {**params, "messages": [{"role": "user",
                                                                            "content": f"hi {i}"}]}}
                 for i in range(3)]  # fmt: skip
    requests_.append({"custom_id": "bad", "params": {**params, "messages": []}})
    batch = client.messages.batches.create(requests=requests_)  # type: ignore[arg-type]
    MessageBatch.model_validate(batch.model_dump())
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 4
    done = wait_until(
        lambda: (b := client.messages.batches.retrieve(batch.id)).processing_status == "ended" and b
    )
    assert (done.request_counts.succeeded, done.request_counts.errored) == (3, 1)
    assert done.results_url == f"{server.url}/v1/messages/batches/{batch.id}/results"
    results = {r.custom_id: r for r in client.messages.batches.results(batch.id)}
    for result in results.values():
        MessageBatchIndividualResponse.model_validate(result.model_dump())
    assert results["r-1"].result.type == "succeeded" and results["bad"].result.type == "errored"
    message = results["r-1"].result.message  # type: ignore[union-attr]
    assert message.content[0].text == "hi 1"  # type: ignore[union-attr]
    assert [b.id for b in client.messages.batches.list()] == [batch.id]


def test_anthropic_cancel_expire_and_queue_limit() -> None:
    with FakeLLMServer(batch_seconds=600, batch_time_scale=2000, batch_queue_limit=4) as srv:
        client = anthropic.Anthropic(api_key=KEY, base_url=srv.anthropic_base_url, max_retries=0)
        params = {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                  "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
        batch = client.messages.batches.create(
            requests=[{"custom_id": f"r{i}", "params": params} for i in range(4)]
        )  # type: ignore[misc]
        with pytest.raises(anthropic.RateLimitError) as caught:  # over the queue limit: Anthropic's 429
            client.messages.batches.create(requests=[{"custom_id": "more", "params": params}])  # type: ignore[list-item]
        assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        cancelling = client.messages.batches.cancel(batch.id)
        assert cancelling.processing_status == "canceling" and cancelling.cancel_initiated_at is not None
        ended = wait_until(
            lambda: (b := client.messages.batches.retrieve(batch.id)).processing_status == "ended" and b
        )
        assert ended.request_counts.canceled >= 1
        srv.add_batch_fault(BatchFault(expire_after=0.5))
        expiring = client.messages.batches.create(
            requests=[{"custom_id": f"e{i}", "params": params} for i in range(4)]
        )  # type: ignore[misc]
        wait_until(lambda: client.messages.batches.retrieve(expiring.id).processing_status == "ended")
        kinds = {r.custom_id: r.result.type for r in client.messages.batches.results(expiring.id)}
    assert kinds == {"e0": "succeeded", "e1": "succeeded", "e2": "expired", "e3": "expired"}


# -- Gemini ------------------------------------------------------------------------------------------------


def gemini_request(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def test_gemini_inline_batch(server: FakeLLMServer) -> None:
    session = requests.Session()
    session.headers["x-goog-api-key"] = KEY
    body = {"batch": {"display_name": "mine", "input_config": {"requests": {"requests": [
        {"request": gemini_request(f"hi {i}"), "metadata": {"key": f"k{i}"}}
        for i in range(3)]}}}}  # fmt: skip
    created = session.post(
        f"{server.url}/v1beta/models/gemini-2.0-flash:batchGenerateContent", json=body
    ).json()
    name = created["name"]
    assert name.startswith("batches/") and created["done"] is False
    assert (
        created["metadata"]["state"] == "BATCH_STATE_PENDING" and created["metadata"]["displayName"] == "mine"
    )
    done = wait_until(lambda: (op := session.get(f"{server.url}/v1beta/{name}").json())["done"] and op)
    assert done["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert done["metadata"]["batchStats"] == {"requestCount": "3", "successfulRequestCount": "3",
                                             "failedRequestCount": "0",
                                             "pendingRequestCount": "0"}  # fmt: skip
    inlined = done["response"]["inlinedResponses"]["inlinedResponses"]
    assert [e["metadata"]["key"] for e in inlined] == ["k0", "k1", "k2"]
    assert inlined[1]["response"]["candidates"][0]["content"]["parts"][0]["text"] == "hi 1"
    listed = session.get(f"{server.url}/v1beta/batches").json()["operations"]
    assert [op["name"] for op in listed] == [name]


def test_gemini_file_batch_upload_download_and_errors(server: FakeLLMServer) -> None:
    session = requests.Session()
    session.headers["x-goog-api-key"] = KEY
    data = b"".join(json.dumps({"key": f"k{i}", "request": gemini_request(f"hi {i}")}).encode() + b"\n"
                    for i in range(4))  # fmt: skip
    start = session.post(f"{server.url}/upload/v1beta/files", json={"file": {"display_name": "in"}}, headers={
        "X-Goog-Upload-Protocol": "resumable", "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": str(len(data)),
    })  # fmt: skip
    upload_url = start.headers["x-goog-upload-url"]
    uploaded = session.post(upload_url, data=data, headers={"X-Goog-Upload-Command": "upload, finalize",
                                                           "X-Goog-Upload-Offset": "0"})  # fmt: skip
    uploaded = uploaded.json()["file"]
    assert uploaded["name"].startswith("files/") and uploaded["sizeBytes"] == str(len(data))
    server.add_batch_fault(BatchFault(error_every=2, error_status=400, error_message="no good"))
    body = {"batch": {"displayName": "f", "inputConfig": {"fileName": uploaded["name"]}}}
    name = session.post(
        f"{server.url}/v1beta/models/gemini-2.0-flash:batchGenerateContent", json=body
    ).json()["name"]
    done = wait_until(lambda: (op := session.get(f"{server.url}/v1beta/{name}").json())["done"] and op)
    results_file = done["response"]["responsesFile"]
    content = session.get(
        f"{server.url}/download/v1beta/{results_file}:download", params={"alt": "media"}
    ).content
    lines = [json.loads(line) for line in content.splitlines()]
    assert [line["key"] for line in lines] == ["k0", "k1", "k2", "k3"]
    assert lines[1]["error"] == {"code": 3, "message": "no good", "status": "INVALID_ARGUMENT"}
    assert "response" in lines[0]


def test_gemini_cancel_and_queue_limit() -> None:
    with FakeLLMServer(batch_seconds=600, batch_time_scale=2000, batch_queue_limit=2) as srv:
        session = requests.Session()
        session.headers["x-goog-api-key"] = KEY
        url = f"{srv.url}/v1beta/models/gemini-2.0-flash:batchGenerateContent"

        def body(n: int) -> dict[str, Any]:
            entries = [{"request": gemini_request("hi"), "metadata": {"key": f"k{i}"}} for i in range(n)]
            return {"batch": {"displayName": "c", "inputConfig": {"requests": {"requests": entries}}}}

        name = session.post(url, json=body(2)).json()["name"]
        refused = session.post(url, json=body(1))
        assert refused.status_code == 429 and refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        assert session.post(f"{srv.url}/v1beta/{name}:cancel").status_code == 200
        done = wait_until(lambda: (op := session.get(f"{srv.url}/v1beta/{name}").json())["done"] and op)
    assert done["metadata"]["state"] == "BATCH_STATE_CANCELLED"


# -- common ------------------------------------------------------------------------------------------------


def test_batch_endpoints_check_keys_and_take_fault_rules(server: FakeLLMServer) -> None:
    from llmkit.testing import Fault

    client = openai.OpenAI(api_key=KEY, base_url=server.openai_base_url, max_retries=0)
    assert requests.get(f"{server.openai_base_url}/batches").status_code == 401  # no key
    server.add_fault(Fault(status=503), times=1)
    with pytest.raises(openai.InternalServerError):
        client.batches.list()
    assert list(client.batches.list()) == []
    stats = server.stats()
    assert stats["batches"] == {"created": 0, "by_provider": {}, "requests": 0, "answered": 0}
    assert [r.status for r in server.requests] == [401, 503, 200]
