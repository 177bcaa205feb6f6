"""Real OpenAI instrumentations, a real ``openai`` client, a canned server, the local receiver.

Each instrumentation a user already runs wraps ``openai`` its own way and names things its own
way; these tests check that what Weave stores is right for each of them:

- ``opentelemetry-instrumentation-openai-v2`` (OpenTelemetry's own, GenAI conventions),
- ``openinference-instrumentation-openai`` (Arize OpenInference),
- ``opentelemetry-instrumentation-openai`` (Traceloop's OpenLLMetry),

once in this process (``instrument(tracer_provider=...)`` with a ``WeaveSpanProcessor``, then
``uninstrument()``, so they never stack) and once with no code at all, through
``opentelemetry-instrument`` in a subprocess.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import openai
import pytest
import wrapt
from opentelemetry.sdk.trace import TracerProvider

from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import API_KEY, PROJECT, make_processor, make_tracer, run_instrumented
from .openai_server import ERROR_MESSAGE, FAIL_TRIGGER, REPLY, RESPONSE_MODEL, CannedOpenAI

REQUEST_MODEL = "gpt-4o-mini"
PLAIN_PROMPT = "What is the canned answer? Asked plainly."
STREAM_PROMPT = "What is the canned answer? Asked for a stream."
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."


@dataclass(frozen=True)
class Instrumentation:
    """One OpenAI instrumentation: where it lives and how its content capture is turned on."""

    name: str
    distribution: str
    module: str  # has an ``OpenAIInstrumentor``
    span_name: str  # the span name of a chat completion: the call's display name and op
    env: dict[str, str] = field(default_factory=dict)

    def instrumentor(self) -> Any:
        return importlib.import_module(self.module).OpenAIInstrumentor()


OPENAI_V2 = Instrumentation(
    name="openai-v2",
    distribution="opentelemetry-instrumentation-openai-v2",
    module="opentelemetry.instrumentation.openai_v2",
    span_name=f"chat {REQUEST_MODEL}",
    env={
        # util-genai 1.1b0 is always on the latest experimental conventions; the opt-in keeps
        # content capture working on releases that look at it again.
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only",
    },
)
OPENINFERENCE = Instrumentation(
    name="openinference",
    distribution="openinference-instrumentation-openai",
    module="openinference.instrumentation.openai",
    span_name="ChatCompletion",  # captures content unless OPENINFERENCE_HIDE_* say otherwise
)
OPENLLMETRY = Instrumentation(
    name="openllmetry",
    distribution="opentelemetry-instrumentation-openai",
    module="opentelemetry.instrumentation.openai",
    span_name="openai.chat",
    env={"TRACELOOP_TRACE_CONTENT": "true"},
)
INSTRUMENTATIONS = (OPENAI_V2, OPENINFERENCE, OPENLLMETRY)
BY_NAME = {instrumentation.name: instrumentation for instrumentation in INSTRUMENTATIONS}


# --- Calling the model, as an app would ------------------------------------------------------


def ask(client: openai.OpenAI, prompt: str) -> str:
    response = client.chat.completions.create(
        model=REQUEST_MODEL, messages=[{"role": "user", "content": prompt}]
    )
    return response.choices[0].message.content or ""


def ask_streaming(client: openai.OpenAI, prompt: str) -> str:
    stream = client.chat.completions.create(
        model=REQUEST_MODEL,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def ask_and_fail(client: openai.OpenAI, prompt: str) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as raised:
        ask(client, prompt)
    return raised.value


# --- What Weave must show for each call ------------------------------------------------------


def llm_calls(
    calls: list[dict[str, Any]], instrumentation: Instrumentation
) -> list[dict[str, Any]]:
    """The chat calls ``instrumentation`` made, in start order."""
    chosen = [call for call in calls if call["display_name"] == instrumentation.span_name]
    names = sorted({call["display_name"] for call in calls})
    assert chosen, f"no {instrumentation.span_name!r} call among {names}"
    return sorted(chosen, key=lambda call: call["started_at"])


def assert_prompt_in_inputs(call: dict[str, Any], prompt: str) -> None:
    """The prompt is in ``inputs.messages``, where Weave's chat view looks for it."""
    inputs = call["inputs"]
    messages = inputs.get("messages")
    assert isinstance(messages, list), f"inputs has no message list: {json.dumps(inputs)[:800]}"
    assert prompt in json.dumps(messages, ensure_ascii=False), json.dumps(inputs)[:800]


def assert_reply_in_output(call: dict[str, Any]) -> None:
    assert call["output"] is not None, "the call has no output"
    assert REPLY in json.dumps(call["output"], ensure_ascii=False), json.dumps(call["output"])


def assert_usage_of_response_model(call: dict[str, Any]) -> None:
    """Usage is keyed by the model that answered (what Weave prices), with OpenAI's counts."""
    usage = call["summary"].get("usage") or {}
    assert set(usage) == {RESPONSE_MODEL}, (
        f"usage keys {sorted(usage)}, attributes: "
        + (json.dumps({k: v for k, v in call["attributes"].items() if k != "otel"})[:800])
    )
    entry = usage[RESPONSE_MODEL]
    counts = {
        "input": entry.get("input_tokens", entry.get("prompt_tokens")),
        "output": entry.get("output_tokens", entry.get("completion_tokens")),
        "total": entry.get("total_tokens"),
        "requests": entry.get("requests"),
    }
    assert counts == {"input": 13, "output": 7, "total": 20, "requests": 1}, entry
    assert None not in entry.values(), f"null token keys would spoil Weave's cost sum: {entry}"


def assert_status_counts(call: dict[str, Any], calls: list[dict[str, Any]]) -> None:
    """The call and its descendants (``opentelemetry-instrument`` also traces httpx below it)."""
    parents = {other["id"]: other["parent_id"] for other in calls}

    def descends(other: dict[str, Any]) -> bool:
        parent = other["parent_id"]
        while parent is not None and parent != call["id"]:
            parent = parents.get(parent)
        return parent == call["id"]

    subtree = [call, *(other for other in calls if descends(other))]
    errors = sum(other["exception"] is not None for other in subtree)
    expected = {"success": len(subtree) - errors, "error": errors}
    assert call["summary"]["status_counts"] == expected


def assert_successful_llm_call(
    call: dict[str, Any], prompt: str, calls: list[dict[str, Any]]
) -> None:
    assert call["exception"] is None, call["exception"]
    assert_status_counts(call, calls)
    assert_usage_of_response_model(call)
    assert_prompt_in_inputs(call, prompt)
    assert_reply_in_output(call)


def assert_failed_llm_call(call: dict[str, Any], prompt: str, calls: list[dict[str, Any]]) -> None:
    """Shown as an error, with what went wrong; the prompt that failed is still there."""
    assert call["exception"] is not None, "an ERROR span must carry an exception"
    exception = json.loads(call["exception"])
    assert set(exception) >= {"type", "message"}, exception
    assert "BadRequestError" in exception["type"], exception
    assert ERROR_MESSAGE in exception["message"], exception
    assert_status_counts(call, calls)
    assert call["summary"]["status_counts"]["success"] == 0
    assert not call["summary"].get("usage"), "a refused request used no tokens"
    assert_prompt_in_inputs(call, prompt)


# --- In this process: instrument, call, flush, uninstrument ----------------------------------


@dataclass
class Traced:
    """An instrumented ``openai`` client; its spans go through Weave's processor to ``receiver``."""

    instrumentation: Instrumentation
    client: openai.OpenAI
    receiver: LocalWeaveServer
    flush: Any

    def only_call(self) -> dict[str, Any]:
        """The one call the test made: one chat span, nothing else traced."""
        assert self.flush(), "the processor did not flush in time"
        calls = self.receiver.calls(PROJECT)
        assert [call["display_name"] for call in calls] == [self.instrumentation.span_name]
        return calls[0]


@pytest.fixture
def canned() -> Iterator[CannedOpenAI]:
    with CannedOpenAI() as server:
        yield server


def unwrap_leftovers() -> list[str]:
    """Unwrap whatever an instrumentor's ``uninstrument()`` left wrapped in ``openai``.

    ``openai`` itself uses no wrapt wrappers, so any left on its classes are leftovers.
    OpenLLMetry 0.62.4 needs this: it calls ``unwrap("openai.resources.chat.completions",
    "Completions.create")``, which ``opentelemetry-instrumentation`` 0.66b2 reads as the object
    ``completions`` of module ``openai.resources.chat`` and its attribute
    ``"Completions.create"``: there is none, so nothing is unwrapped, and the next
    ``instrument()`` stacks a second wrapper (a streamed reply is then recorded twice over).
    """
    unwrapped = []
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.partition(".")[0] != "openai":
            continue
        for owner in list(vars(module).values()):
            if not isinstance(owner, type) or owner.__module__.partition(".")[0] != "openai":
                continue
            for attribute, value in list(vars(owner).items()):
                original = value
                while isinstance(original, wrapt.FunctionWrapper):
                    original = original.__wrapped__
                if original is not value:
                    setattr(owner, attribute, original)
                    unwrapped.append(f"{owner.__module__}.{owner.__qualname__}.{attribute}")
    return unwrapped


@contextmanager
def instrumented(instrumentation: Instrumentation, provider: TracerProvider) -> Iterator[None]:
    """``instrumentation`` on ``openai`` for the block only: nothing stacks across tests."""
    instrumentor = instrumentation.instrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()
        unwrap_leftovers()


@pytest.fixture(params=[instrumentation.name for instrumentation in INSTRUMENTATIONS])
def traced(
    request: pytest.FixtureRequest,
    receiver: LocalWeaveServer,
    canned: CannedOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Traced]:
    instrumentation = BY_NAME[request.param]
    for name, value in instrumentation.env.items():
        monkeypatch.setenv(name, value)
    provider, _ = make_tracer(make_processor(receiver.url))
    try:
        with instrumented(instrumentation, provider):
            client = openai.OpenAI(base_url=canned.base_url, api_key="sk-test", max_retries=0)
            yield Traced(instrumentation, client, receiver, provider.force_flush)
    finally:
        provider.shutdown()


def test_chat_completion(traced: Traced) -> None:
    assert ask(traced.client, PLAIN_PROMPT) == REPLY
    call = traced.only_call()
    assert call["parent_id"] is None
    assert_successful_llm_call(call, PLAIN_PROMPT, [call])


def test_streamed_chat_completion_with_usage(traced: Traced) -> None:
    assert ask_streaming(traced.client, STREAM_PROMPT) == REPLY
    call = traced.only_call()
    assert_successful_llm_call(call, STREAM_PROMPT, [call])


def test_refused_chat_completion(traced: Traced) -> None:
    error = ask_and_fail(traced.client, FAIL_PROMPT)
    assert error.status_code == 400
    call = traced.only_call()
    assert_failed_llm_call(call, FAIL_PROMPT, [call])


def test_nothing_traces_after_the_block(
    receiver: LocalWeaveServer, canned: CannedOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests' instrument/uninstrument leaves no wrapper behind: none stacks on the next."""
    provider, _ = make_tracer(make_processor(receiver.url))
    for instrumentation in INSTRUMENTATIONS:
        for name, value in instrumentation.env.items():
            monkeypatch.setenv(name, value)
        with instrumented(instrumentation, provider):
            pass
    client = openai.OpenAI(base_url=canned.base_url, api_key="sk-test", max_retries=0)
    assert ask_streaming(client, STREAM_PROMPT) == REPLY
    assert provider.force_flush()
    provider.shutdown()
    assert len(canned.requests) == 1
    assert receiver.calls(PROJECT) == []


# --- No code: opentelemetry-instrument in a subprocess ---------------------------------------

APP = textwrap.dedent(
    f"""
    import openai

    # OPENAI_BASE_URL and OPENAI_API_KEY come from the environment, as in production.
    client = openai.OpenAI(max_retries=0)
    messages = [{{"role": "user", "content": {PLAIN_PROMPT!r}}}]
    reply = client.chat.completions.create(model={REQUEST_MODEL!r}, messages=messages)
    print("plain:", reply.choices[0].message.content)

    stream = client.chat.completions.create(
        model={REQUEST_MODEL!r},
        messages=[{{"role": "user", "content": {STREAM_PROMPT!r}}}],
        stream=True,
        stream_options={{"include_usage": True}},
    )
    print("stream:", "".join(c.choices[0].delta.content or "" for c in stream if c.choices))

    try:
        client.chat.completions.create(
            model={REQUEST_MODEL!r}, messages=[{{"role": "user", "content": {FAIL_PROMPT!r}}}]
        )
    except openai.BadRequestError as error:
        print("refused:", error.status_code)
    """
)


def shadow_other_instrumentations(keep: Instrumentation, directory: Path) -> Path:
    """A directory that, first on ``PYTHONPATH``, hides the other OpenAI instrumentations.

    All three register their instrumentor under the same entry point name, ``openai``, so
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` cannot pick one: it would drop all three, and
    with none dropped ``opentelemetry-instrument`` stacks all three. ``importlib.metadata``
    reads one distribution per name, the first on ``sys.path``; an empty ``.dist-info`` of the
    same name there hides the installed one's entry points.
    """
    for other in INSTRUMENTATIONS:
        if other is keep:
            continue
        stem = other.distribution.replace("-", "_")
        dist_info = directory / f"{stem}-{version(other.distribution)}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(
            "Metadata-Version: 2.1\n"
            f"Name: {other.distribution}\n"
            f"Version: {version(other.distribution)}\n"
        )
    return directory


@pytest.mark.parametrize("name", [instrumentation.name for instrumentation in INSTRUMENTATIONS])
def test_zero_code(
    name: str, receiver: LocalWeaveServer, canned: CannedOpenAI, tmp_path: Path
) -> None:
    instrumentation = BY_NAME[name]
    app = tmp_path / "app.py"
    app.write_text(APP)
    shadow = shadow_other_instrumentations(instrumentation, tmp_path / "shadow")
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")])),
        "OTEL_SERVICE_NAME": f"zero-code-{name}",
        "WANDB_API_KEY": API_KEY,
        "WEAVE_PROJECT": PROJECT,
        "WF_TRACE_SERVER_URL": receiver.url,
        "OPENAI_BASE_URL": canned.base_url,
        "OPENAI_API_KEY": "sk-test",
        **instrumentation.env,
    }
    result = run_instrumented(
        app, env, clear_prefixes=("OTEL_", "OPENAI_", "TRACELOOP_", "OPENINFERENCE_")
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"plain: {REPLY}", f"stream: {REPLY}", "refused: 400"]

    calls = receiver.calls(PROJECT)
    plain, streamed, refused = llm_calls(calls, instrumentation)
    for call in (plain, streamed, refused):
        assert call["attributes"]["otel"]["resource"]["service.name"] == f"zero-code-{name}"
        assert call["parent_id"] is None
    assert_successful_llm_call(plain, PLAIN_PROMPT, calls)
    assert_successful_llm_call(streamed, STREAM_PROMPT, calls)
    assert_failed_llm_call(refused, FAIL_PROMPT, calls)
    # Only this instrumentation traced openai: the other calls are httpx's, one per request,
    # each below its chat call.
    chat_ids = {plain["id"], streamed["id"], refused["id"]}
    others = [call for call in calls if call["id"] not in chat_ids]
    assert sorted(call["parent_id"] for call in others) == sorted(chat_ids), [
        (call["display_name"], call["attributes"]["otel"]["scope"]) for call in others
    ]
    assert {call["attributes"]["otel"]["scope"]["name"] for call in others} == {
        "opentelemetry.instrumentation.httpx"
    }


def test_example_app_shows_the_calls() -> None:
    """``examples/openai_app.py`` runs as documented and prints what Weave would show."""
    example = Path(__file__).resolve().parent.parent / "examples" / "openai_app.py"
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, str(example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 calls stored by the local Weave receiver" in result.stdout
    assert result.stdout.count(f"model {RESPONSE_MODEL}: 13 in, 7 out, 20 total, 1 request") == 2
    assert f"output: {REPLY}" in result.stdout
    assert "[error]" in result.stdout
    assert "BadRequestError" in result.stdout
