"""Helpers shared by the test modules: clocks, fakes of each layer, calls, tracers, the contract.

Fixtures live in ``conftest.py``; everything a test imports lives here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import WeaveSettings, WeaveSpanProcessor
from opentelemetry.exporter.weave._call import EndedCall, StartedCall, WeaveCall
from opentelemetry.exporter.weave._delivery import DeliveryReport
from opentelemetry.exporter.weave._pipeline import BatchReport
from opentelemetry.exporter.weave._retry import RetryPolicy
from opentelemetry.exporter.weave._stats import ExportStats
from opentelemetry.exporter.weave._transport import PostResult
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .chat_oracle import chat_errors

API_KEY = "test-secret-key-0123456789"
PROJECT = "test-entity/test-project"

CONTRACT_DIR = Path(__file__).parent / "contract"

Record = Callable[[Callable[[Tracer], None]], list[ReadableSpan]]
"""The ``record_spans`` fixture: runs a function against a real tracer, returns its spans."""

NO_WAIT_RETRIES = RetryPolicy(initial_backoff_seconds=0.001, max_backoff_seconds=0.002)
"""Backoff too short to matter, for tests over real HTTP that retry."""


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it is true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def settings_for(server_url: str = "http://127.0.0.1:9", **options: Any) -> WeaveSettings:
    """Settings for tests. Op refs are off unless asked for: with them, each new span name
    costs op requests, which tests of other stages would have to count (tests/test_ops.py)."""
    options.setdefault("op_refs", False)
    return WeaveSettings.from_env(
        {}, api_key=API_KEY, project=PROJECT, server_url=server_url, **options
    )


class FakeClock:
    """A monotonic clock that moves only when told to, or when something waits on it.

    ``wait`` returns at once, as if the time had passed (or the interrupt was already set),
    and records what was waited for.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        if interrupt.is_set():
            return True
        with self._lock:
            self.waits.append(seconds)
            self._now += seconds
        return False


@dataclass
class ScriptedAttempt:
    """A one-attempt poster that answers from a script, then 200; records each attempt."""

    script: list[PostResult] = field(default_factory=list)
    clock: FakeClock | None = None
    seconds_per_attempt: float = 0.0
    """How far each attempt moves ``clock``, as if the request took that long."""
    attempts: list[tuple[str, bytes, float, dict[str, str]]] = field(default_factory=list)

    def post(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        self.attempts.append((path, body, timeout, dict(headers)))
        if self.clock is not None:
            self.clock.advance(self.seconds_per_attempt)
        return self.script.pop(0) if self.script else PostResult(200)


def http_error(status: int, reason: str = "", **extra: Any) -> PostResult:
    """What the HTTP layer answers for ``status``."""
    return PostResult(status, reason, retryable=status in (408, 409, 429) or status >= 500, **extra)


@dataclass
class RecordingPoster:
    """A retrying poster stand-in: answers by route and body via ``answer``; records requests."""

    answer: Callable[[str, bytes], PostResult] = lambda path, body: PostResult(200)
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, path: str, body: bytes, deadline: float) -> PostResult:
        with self._lock:
            self.requests.append((path, body))
        return self.answer(path, body)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@dataclass
class RecordingSender:
    """A call sender stand-in: delivers everything (or what ``answer`` says); records batches."""

    answer: Callable[[Sequence[WeaveCall]], DeliveryReport] = lambda calls: DeliveryReport(
        delivered=len(calls)
    )
    batches: list[list[WeaveCall]] = field(default_factory=list)

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        self.batches.append(list(calls))
        return self.answer(calls)


_NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_call(
    call_id: str = "0123456789abcdef",
    parent_id: str | None = None,
    inputs: dict[str, Any] | None = None,
    output: Any = None,
    attributes: dict[str, Any] | None = None,
) -> WeaveCall:
    """A small valid call, without a span."""
    return WeaveCall(
        start=StartedCall(
            project_id=PROJECT,
            id=call_id,
            op_name="op",
            trace_id="0123456789abcdef0123456789abcdef",
            parent_id=parent_id,
            started_at=_NOW,
            attributes=attributes or {},
            inputs=inputs or {},
        ),
        end=EndedCall(
            project_id=PROJECT,
            id=call_id,
            started_at=_NOW,
            ended_at=_NOW,
            output=output,
            summary={},
        ),
    )


def make_calls(count: int) -> list[WeaveCall]:
    return [make_call(f"{index:016x}") for index in range(count)]


class FakeBatchExporter:
    """What the processor drives, with no mapping and no HTTP: records batches, answers ``ok``.

    ``block`` (an Event) holds every export until it is set; ``fail_next`` makes the next
    batch report a loss.
    """

    def __init__(self, clock: FakeClock | None = None, **options: Any) -> None:
        self.settings = settings_for(**options)
        self.clock = clock or FakeClock()
        self.batches: list[tuple[list[ReadableSpan], float]] = []
        self.started: list[ReadableSpan] = []
        self.ended: list[ReadableSpan] = []
        self.live_checks = 0
        self.ended_open = 0
        self.block: threading.Event | None = None
        self.fail_next = False
        self.forked = 0
        self.closed = 0
        self._lock = threading.Lock()

    def span_started(self, span: ReadableSpan) -> None:
        self.started.append(span)

    def span_ended(self, span: ReadableSpan) -> None:
        self.ended.append(span)

    def send_live_starts(self, deadline: float) -> None:
        self.live_checks += 1

    def end_open_calls(self, deadline: float) -> None:
        self.ended_open += 1

    def export_batch(self, spans: Sequence[ReadableSpan], deadline: float) -> BatchReport:
        if self.block is not None:
            self.block.wait(10)
        with self._lock:
            self.batches.append((list(spans), deadline))
            failed, self.fail_next = self.fail_next, False
        delivered = len(spans) - (1 if failed and spans else 0)
        failures = DeliveryReport.failed([make_call()], "/fake", PostResult(400)).failures
        return BatchReport(
            spans=len(spans),
            filtered=0,
            unmappable=0,
            delivery=DeliveryReport(delivered=delivered, failures=failures if failed else ()),
        )

    def exported(self) -> list[ReadableSpan]:
        with self._lock:
            return [span for spans, _ in self.batches for span in spans]

    def stats(self) -> ExportStats:
        return ExportStats(calls_exported=len(self.exported()))

    def spill(self, spans: Sequence[ReadableSpan]) -> int:
        return 0  # no spool: the processor counts them as dropped

    def after_fork(self) -> None:
        self.forked += 1

    def close(self) -> None:
        self.closed += 1


def load_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((CONTRACT_DIR / name).read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


ROUTE_VALIDATORS = {
    "/call/start": load_validator("call_start.schema.json"),
    "/call/end": load_validator("call_end.schema.json"),
}
CALLS_COMPLETE_VALIDATOR = load_validator("calls_complete.schema.json")
CALLS_COMPLETE_ROUTE = re.compile(r"/v2/[^/]+/[^/]+/calls/complete")
# The v2 single-call routes take the v1 bodies (WEAVE_WIRE §1).
V2_CALL_ROUTE = re.compile(r"/v2/[^/]+/[^/]+(?P<route>/call/(start|end))")


def contract_errors(path: str, body: Any) -> list[str]:
    """What in ``body`` breaks the contract of the route it is posted to."""
    if path in ROUTE_VALIDATORS:
        return [_describe(path, error) for error in ROUTE_VALIDATORS[path].iter_errors(body)]
    if CALLS_COMPLETE_ROUTE.fullmatch(path):
        return [_describe(path, error) for error in CALLS_COMPLETE_VALIDATOR.iter_errors(body)]
    if match := V2_CALL_ROUTE.fullmatch(path):
        validator = ROUTE_VALIDATORS[match["route"]]
        return [_describe(path, error) for error in validator.iter_errors(body)]
    if path == "/call/upsert_batch":
        if not isinstance(body, dict) or set(body) != {"batch"}:
            return [f"{path}: body must be exactly {{'batch': [...]}}"]
        errors = []
        for item in body["batch"]:
            mode = item.get("mode")
            if set(item) != {"mode", "req"} or mode not in ("start", "end"):
                errors.append(f"{path}: bad item keys or mode: {sorted(item)}")
            else:
                errors.extend(contract_errors(f"/call/{mode}", item["req"]))
        return errors
    return [f"no contract for route {path}"]


def _describe(path: str, error: jsonschema.ValidationError) -> str:
    return f"{path}: {error.message} at {list(error.absolute_path)}"


def make_processor(server_url: str, **options: Any) -> WeaveSpanProcessor:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "project": PROJECT,
        "server_url": server_url,
        "schedule_delay_millis": 50,
        "export_timeout_millis": 10_000,
        "op_refs": False,  # as in settings_for
    }
    settings.update(options)
    return WeaveSpanProcessor(**settings)


def make_tracer(*processors: Any) -> tuple[TracerProvider, Tracer]:
    provider = TracerProvider(shutdown_on_exit=False)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider, provider.get_tracer("tests", "1.0")


def run_instrumented(
    app: Path, env_overrides: dict[str, str], clear_prefixes: tuple[str, ...] = ("OTEL_",)
) -> subprocess.CompletedProcess[str]:
    """``OTEL_TRACES_EXPORTER=weave opentelemetry-instrument python app`` in a subprocess.

    Variables starting with ``clear_prefixes`` are not inherited; ``env_overrides`` win.
    """
    command = Path(sys.executable).parent / "opentelemetry-instrument"
    if not command.exists():
        pytest.fail("opentelemetry-instrument is missing: install the [test] extra")
    env = {name: value for name, value in os.environ.items() if not name.startswith(clear_prefixes)}
    env.update(
        {
            "OTEL_TRACES_EXPORTER": "weave",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            **env_overrides,
        }
    )
    return subprocess.run(
        [str(command), sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_scenario(
    environment: str, scenario: str, receiver_url: str, **env_overrides: str
) -> subprocess.CompletedProcess[str]:
    """``python -m tests.frameworks.<scenario>`` in the test environment ``environment``
    (``tests/venvs.py``), tracing into the receiver at ``receiver_url``; fails on a nonzero exit.
    """
    from .frameworks.runtime import RECEIVER_URL_ENV
    from .venvs import venv_python

    python = venv_python(environment)
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env.update(
        {
            RECEIVER_URL_ENV: receiver_url,
            "WANDB_API_KEY": API_KEY,
            "WEAVE_PROJECT": PROJECT,
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            **env_overrides,
        }
    )
    result = subprocess.run(
        [str(python), "-m", f"tests.frameworks.{scenario}"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{scenario} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


# Framework tests (tests/test_fw_*.py): what a Weave user must see in the stored calls.


def weave_kind(call: Mapping[str, Any]) -> str | None:
    """The call's ``attributes.weave.kind`` (its icon in the UI), None when unset."""
    weave = (call.get("attributes") or {}).get("weave")
    return weave.get("kind") if isinstance(weave, Mapping) else None


def usage_by_model(call: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """``summary.usage`` without the counters that are not token pairs or requests."""
    usage = (call.get("summary") or {}).get("usage") or {}
    keys = ("input_tokens", "output_tokens", "total_tokens", "requests")
    return {
        model: {key: value for key, value in counts.items() if key in keys}
        for model, counts in usage.items()
    }


def summed_usage(calls: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """The per-model sum of the calls' own usage: what their common ancestor must show."""
    total: dict[str, dict[str, int]] = {}
    for call in calls:
        for model, counts in usage_by_model(call).items():
            into = total.setdefault(model, {})
            for key, value in counts.items():
                into[key] = into.get(key, 0) + value
    return total


def exception_errors(
    call: Mapping[str, Any], type_name: str | None, message_part: str, *, with_frames: bool = True
) -> list[str]:
    """Why the call's ``exception`` is not the JSON the exception panel reads (empty: it is).

    ``type_name`` None: any type (a span with an error status but no exception event);
    ``with_frames`` False: the traceback may be an empty list (no stack trace was recorded).
    """
    text = call.get("exception")
    if not isinstance(text, str):
        return [f"exception is {text!r}, not JSON text"]
    try:
        exception = json.loads(text)
    except ValueError:
        return [f"exception is not JSON: {text[:200]!r}"]
    errors = []
    if type_name is not None and exception.get("type") != type_name:
        errors.append(f"exception type {exception.get('type')!r} != {type_name!r}")
    if message_part not in str(exception.get("message")):
        errors.append(f"exception message {exception.get('message')!r} lacks {message_part!r}")
    frames = exception.get("traceback")
    frame_keys = {"filename", "line_number", "function_name", "text"}
    if not isinstance(frames, list) or (with_frames and not frames):
        errors.append(f"traceback is {type(frames).__name__}, not a list of frames")
    elif not all(isinstance(frame, dict) and frame_keys <= frame.keys() for frame in frames):
        errors.append(f"traceback frames lack {sorted(frame_keys)}: {frames[:1]!r}")
    return errors


class Checklist:
    """Many named checks on one scenario's calls, all evaluated, reported together.

    A framework scenario takes seconds to run: one run feeds every assertion, and the failure
    message lists each check that failed with the raw values it saw (``pytest -rA`` or ``-s``
    also prints the ones that passed).
    """

    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: object = "") -> bool:
        self.results.append((name, ok, "" if ok else str(detail)[:1500]))
        return ok

    def equal(self, name: str, actual: object, expected: object) -> bool:
        return self.check(name, actual == expected, f"got {actual!r}, want {expected!r}")

    def report(self) -> str:
        return "\n".join(
            f"{'PASS' if ok else 'FAIL'} {name}" + (f"\n     {detail}" if detail else "")
            for name, ok, detail in self.results
        )

    def assert_all(self) -> None:
        print(self.report())
        failed = [name for name, ok, _ in self.results if not ok]
        assert not failed, f"{len(failed)} of {len(self.results)} checks failed:\n{self.report()}"


def op_matches(call: Mapping[str, Any], span_name: str) -> bool:
    """Whether the call's ``op_name`` is ``span_name``: plain, or an op ref to its safe name."""
    op_name = str(call.get("op_name"))
    safe = re.sub(r"[^\w._-]", "", span_name.replace(" ", "_").replace("/", "_")).lower()
    return op_name == span_name or (op_name.startswith("weave:///") and f"/op/{safe}:" in op_name)


def calls_named(calls: Sequence[Mapping[str, Any]], *span_names: str) -> list[Any]:
    """The calls of spans with these names (``op_matches``), in start order."""
    found = [c for c in calls if any(op_matches(c, name) for name in span_names)]
    return sorted(found, key=lambda call: str(call["started_at"]))


def children_of(calls: Sequence[Mapping[str, Any]], parent: Mapping[str, Any]) -> list[Any]:
    """The calls whose parent is ``parent``, in start order; calls started at the same time in
    end order. Not the order they ran in when their starts fell in one tick of a coarse clock
    (Node's SDK stamps starts in whole milliseconds, and an end as that start plus the
    duration): a scenario run on such a clock spaces its steps out (tests/js)."""
    found = [c for c in calls if c["parent_id"] == parent["id"]]
    return sorted(found, key=lambda call: (str(call["started_at"]), str(call["ended_at"])))


def trace_of(calls: Sequence[Mapping[str, Any]], call: Mapping[str, Any]) -> list[Any]:
    """Every call of ``call``'s trace but ``call`` itself."""
    return [c for c in calls if c["trace_id"] == call["trace_id"] and c["id"] != call["id"]]


Call = dict[str, Any]
"""A stored call, start and end fields merged (``LocalWeaveServer.calls()``)."""
MembersOf = Callable[[Sequence[Mapping[str, Any]], Mapping[str, Any]], list[Any]]
"""Which calls belong to a call: ``trace_of``, ``children_of``."""


def scenario_calls_fixture(environment: str, project: str) -> Any:
    """A module-scoped fixture ``calls``: the stored calls of one run of
    ``tests/frameworks/scenario_<environment>.py``, which every test of the module reads (the
    run takes seconds). Assign it in the module: ``calls = scenario_calls_fixture(...)``.
    """

    @pytest.fixture(scope="module", name="calls")
    def calls() -> Iterator[list[Call]]:
        with LocalWeaveServer(api_key=API_KEY) as receiver:
            yield calls_of_run(receiver, environment, project)

    return calls


def calls_of_run(
    receiver: LocalWeaveServer, environment: str, project: str, **env_overrides: str
) -> list[Call]:
    """Runs ``scenario_<environment>`` (``run_scenario``) into ``receiver`` under ``project``:
    the calls it stored there, in start order."""
    run_scenario(
        environment, f"scenario_{environment}", receiver.url, WEAVE_PROJECT=project, **env_overrides
    )
    return sorted(receiver.calls(project), key=lambda call: call["started_at"])


def roots_named(calls: Sequence[Mapping[str, Any]], *span_names: str) -> list[Any]:
    """The root calls (no parent) of spans with these names, in start order."""
    return [c for c in calls_named(calls, *span_names) if c["parent_id"] is None]


def as_text(value: Any) -> str:
    """``value`` as JSON text, to look for a string anywhere in it."""
    return json.dumps(value, ensure_ascii=False)


def token_usage(
    input_tokens: int, output_tokens: int, total_tokens: int | None = None, *, requests: int = 1
) -> dict[str, int]:
    """One model's entry in ``usage_by_model``; the total is the sum unless given."""
    total = input_tokens + output_tokens if total_tokens is None else total_tokens
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total,
        "requests": requests,
    }


def assert_all_chat_shaped(llm_calls: Sequence[Call], count: int) -> None:
    """There are ``count`` LLM calls, and each is an OpenAI chat (``chat_errors``)."""
    assert len(llm_calls) == count
    not_chats = {call["id"]: errors for call in llm_calls if (errors := chat_errors(call))}
    assert not_chats == {}


def display_names(calls: Sequence[Mapping[str, Any]], span_name: str) -> set[str]:
    """The display names of the calls of spans named ``span_name``."""
    return {c["display_name"] for c in calls_named(calls, span_name)}


def assert_usage_per_call(
    llm_calls: Sequence[Mapping[str, Any]], model: str, usages: Sequence[tuple[int, int]]
) -> None:
    """The LLM calls' own usage, in start order: one request of (input, output) tokens each."""
    assert [usage_by_model(c) for c in llm_calls] == [{model: token_usage(i, o)} for i, o in usages]


def assert_roots_sum_their_llm_calls(
    calls: Sequence[Mapping[str, Any]],
    roots: Sequence[Mapping[str, Any]],
    llm_span: str,
    members_of: MembersOf = trace_of,
) -> None:
    """Each root's usage is the sum of the ``llm_span`` calls ``members_of`` it, no more."""
    for root in roots:
        llm_calls = calls_named(members_of(calls, root), llm_span)
        assert usage_by_model(root) == summed_usage(llm_calls), root["attributes"]


def error_count(call: Mapping[str, Any]) -> int:
    """How many calls of the subtree failed (``summary.status_counts.error``)."""
    return int(call["summary"]["status_counts"].get("error", 0))


def assert_one_kind(calls: Sequence[Mapping[str, Any]], kind: str | None) -> None:
    """There are calls, and every one has the Weave kind ``kind``."""
    assert calls
    assert {weave_kind(c) for c in calls} == {kind}, calls[0]["attributes"]


def assert_thread_of_turns(
    calls: Sequence[Mapping[str, Any]],
    turns: Sequence[Mapping[str, Any]],
    thread_id: str,
    members_of: MembersOf = trace_of,
) -> None:
    """Each of ``turns`` is a turn of ``thread_id``, and so is every call ``members_of`` it."""
    assert [(t["thread_id"], t["turn_id"]) for t in turns] == [(thread_id, t["id"]) for t in turns]
    for turn in turns:
        members = {(c["thread_id"], c["turn_id"]) for c in members_of(calls, turn)}
        assert members == {(thread_id, turn["id"])}
