"""The gateway's core, without HTTP: routing, the trace-wait buffer, the bounded queue, and one
export pipeline per (project, API key) on a few export threads.

A request's spans are taken in whole or not at all: if they would take the spans or bytes
taken in and not yet exported over the queue's bounds, the request is refused (the HTTP layer
answers 503 with ``Retry-After``) and the client retries. Taken-in spans are held per trace
(``_traces.py``), then exported through :class:`ExportPipeline`, the processor's own pipeline.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum

from opentelemetry.exporter.weave._config import _API_KEY, ConfigError, WeaveSettings
from opentelemetry.exporter.weave._pipeline import ExportPipeline
from opentelemetry.exporter.weave._retry import SYSTEM_CLOCK, Clock, RetryPolicy
from opentelemetry.exporter.weave._secrets import RedactingFilter
from opentelemetry.exporter.weave._stats import ExportStats, LossReporter
from opentelemetry.exporter.weave.gateway._otlp import DecodedRequest
from opentelemetry.exporter.weave.gateway._settings import GatewaySettings
from opentelemetry.exporter.weave.gateway._traces import HeldSpan, ReleasedTrace, TraceBuffer

__all__ = ["Gateway", "GatewayStats", "Route", "Submission", "Verdict"]

logger = logging.getLogger(__package__)
# The package's filter redacts every live key's forms from its own logger's records; records
# of this child logger do not pass through it, so it gets one of its own.
logger.addFilter(RedactingFilter())

ENTITY_ATTRIBUTE = "wandb.entity"
PROJECT_ATTRIBUTE = "wandb.project"
PROJECT_HEADER = "project_id"
API_KEY_HEADER = "wandb-api-key"
# Validated settings kept per (project, key) asked for, beyond the open pipelines' own.
_SETTINGS_CACHE_FACTOR = 4


@dataclass(frozen=True)
class Route:
    """Where a span goes: its project and the key it is sent with (never shown)."""

    project_id: str
    api_key: str = field(repr=False)
    settings: WeaveSettings = field(compare=False, repr=False)


class Verdict(Enum):
    ACCEPTED = "accepted"
    QUEUE_FULL = "queue_full"
    DRAINING = "draining"
    NO_API_KEY = "no_api_key"


@dataclass(frozen=True)
class Submission:
    """What became of one request's spans."""

    verdict: Verdict
    rejected: int = 0
    """Spans refused for good (invalid ids, no valid project): the OTLP ``partial_success``."""
    errors: tuple[str, ...] = ()
    message: str = ""


@dataclass(frozen=True)
class GatewayStats:
    """The gateway's own counters (the pipelines' are their :class:`ExportStats`)."""

    requests_accepted: int = 0
    """Requests whose spans were taken in (perhaps with some rejected)."""
    requests_refused_queue_full: int = 0
    """Requests answered 503 because the queue was full: the client retries them."""
    requests_refused_draining: int = 0
    """Requests answered 503 while the gateway was shutting down."""
    requests_undecodable: int = 0
    """Requests answered 400 or 413: no OTLP trace request, or too large."""
    requests_unauthorized: int = 0
    """Requests answered 401: no API key in the request, and none of the gateway's own."""
    spans_received: int = 0
    """Spans taken in."""
    spans_rejected: int = 0
    """Spans refused in a ``partial_success``: invalid ids, or no valid project."""
    spans_late: int = 0
    """Spans that came after their trace was exported: exported at once, on their own."""
    traces_timed_out: int = 0
    """Traces exported without their root, after ``WEAVE_GATEWAY_MAX_TRACE_WAIT``."""
    traces_exported_early: int = 0
    """Traces exported before their time, to keep within the held-span or trace bounds."""
    spans_dropped_at_drain: int = 0
    """Spans neither exported nor spooled (with a spool set) by the drain's deadline."""
    pipelines_opened: int = 0
    """Export pipelines opened, one per (project, key)."""
    pipelines_evicted: int = 0
    """Pipelines closed to stay within ``WEAVE_GATEWAY_MAX_PIPELINES``."""
    spans_held: int = 0
    """Now: spans held waiting for the rest of their trace."""
    traces_held: int = 0
    """Now: traces held."""
    spans_queued: int = 0
    """Now: spans taken in and not yet exported (held ones included)."""
    bytes_queued: int = 0
    """Now: their size in request bytes."""
    pipelines_open: int = 0
    """Now: open pipelines."""


GAUGES = frozenset({"spans_held", "traces_held", "spans_queued", "bytes_queued", "pipelines_open"})
"""The :class:`GatewayStats` fields that are levels, not counts."""


@dataclass
class _Slot:
    pipeline: ExportPipeline
    reporter: LossReporter
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class _Job:
    route: Route
    spans: list[HeldSpan]

    @property
    def size(self) -> int:
        return sum(held.size for held in self.spans)


def api_key_from(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: ``Authorization`` (Basic ``api:<key>``, or Bearer), else
    ``wandb-api-key``. Header names lowercase."""
    authorization = headers.get("authorization", "").strip()
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, _, password = decoded.partition(":")
        return password or None
    return headers.get(API_KEY_HEADER, "").strip() or None


def project_from(resource: Mapping[str, object], headers: Mapping[str, str]) -> str | None:
    """``entity/project`` for a ResourceSpans: its resource's ``wandb.entity`` and
    ``wandb.project``, else the request's ``project_id`` header; None: the gateway's own."""
    entity, project = resource.get(ENTITY_ATTRIBUTE), resource.get(PROJECT_ATTRIBUTE)
    if isinstance(entity, str) and isinstance(project, str) and entity and project:
        return f"{entity}/{project}"
    if isinstance(project, str) and "/" in project:
        return project
    return headers.get(PROJECT_HEADER, "").strip() or None


class Gateway:
    """Takes in decoded requests and exports their spans; thread-safe."""

    def __init__(
        self,
        settings: GatewaySettings,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        retry_policy: RetryPolicy | None = None,
        pipeline_factory: Callable[[WeaveSettings], ExportPipeline] | None = None,
    ) -> None:
        self.settings = settings
        self._environ = environ
        self._clock = clock
        self._new_pipeline = pipeline_factory or (
            lambda weave: ExportPipeline(weave, retry_policy, clock)
        )
        # Every other setting is checked now, with a stand-in key and project: those two may
        # come with each request instead.
        self._base = WeaveSettings.from_env(environ, api_key="check", project="check/check")
        own_key = (os.environ if environ is None else environ).get("WANDB_API_KEY", "").strip()
        self._own_key = own_key or None
        self._lock = threading.Lock()
        self._buffer = TraceBuffer(
            settings.trace_wait_seconds,
            settings.max_trace_wait_seconds,
            settings.max_held_spans,
            settings.max_held_traces,
            clock.monotonic,
        )
        self._counts = dict.fromkeys((spec.name for spec in fields(GatewayStats)), 0)
        self._queued_spans = 0
        self._queued_bytes = 0
        self._routes: OrderedDict[tuple[str | None, str | None], Route] = OrderedDict()
        self._pipelines: OrderedDict[Route, _Slot] = OrderedDict()
        self._retired: dict[str, ExportStats] = {}
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._draining = False
        self._stopping = threading.Event()
        self._drain_deadline = float("inf")
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        scheduler = threading.Thread(target=self._schedule, name="weave-gateway-scheduler")
        workers = [
            threading.Thread(target=self._work, name=f"weave-gateway-export-{number}")
            for number in range(self.settings.export_workers)
        ]
        self._threads = [scheduler, *workers]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self, timeout: float | None = None) -> bool:
        """Refuse new requests, export everything held and queued within ``timeout``
        (``WEAVE_GATEWAY_DRAIN_TIMEOUT``), then close the pipelines. Whether all was exported."""
        seconds = self.settings.drain_timeout_seconds if timeout is None else timeout
        deadline = self._clock.monotonic() + seconds
        with self._lock:
            self._draining = True
            self._drain_deadline = deadline
            self._enqueue(self._buffer.release_all())
            while self._queued_spans and self._clock.monotonic() < deadline:
                self._idle.wait(min(0.1, max(0.0, deadline - self._clock.monotonic())))
            complete = self._queued_spans == 0
        self._stopping.set()
        self._wake.set()
        self._give_up_queued()
        for _ in self._threads[1:]:
            self._jobs.put(None)
        with self._lock:
            slots = list(self._pipelines.values())
        for slot in slots:
            slot.pipeline.close()  # exports still running give up now
        for thread in self._threads:
            thread.join(timeout=max(1.0, deadline - self._clock.monotonic()))
        with self._lock:
            for slot_route, slot in list(self._pipelines.items()):
                self._retire(slot_route, slot)
            self._pipelines.clear()
        return complete

    def _give_up_queued(self) -> None:
        """Past the drain's deadline: spool what is still queued (with a spool), count it."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._finish(job, self._abandon)

    # -- taking requests in --------------------------------------------------------------

    def submit(self, request: DecodedRequest, headers: Mapping[str, str]) -> Submission:
        """Route and take in a request's spans, or refuse them all; ``headers`` lowercase."""
        if self._draining:
            self._count("requests_refused_draining")
            return Submission(Verdict.DRAINING, message="the gateway is shutting down")
        key = api_key_from(headers)
        if key is None and self._own_key is None:
            self._count("requests_unauthorized")
            return Submission(Verdict.NO_API_KEY, message="no API key: send one in Authorization")
        if key is not None and not _API_KEY.fullmatch(key):
            self._count("requests_unauthorized")
            return Submission(Verdict.NO_API_KEY, message="the API key is malformed (not shown)")
        rejected, errors = request.rejected, list(request.errors)
        routed: list[tuple[Route, list[HeldSpan]]] = []
        size = _span_size(request)
        for batch in request.batches:
            try:
                route = self._route(project_from(batch.resource, headers), key)
            except ConfigError as error:  # a project that is missing or no W&B name
                rejected += len(batch.spans)
                errors.append(str(error))
                continue
            routed.append((route, [HeldSpan(span, size) for span in batch.spans]))
        spans = sum(len(held) for _, held in routed)
        with self._lock:
            if spans and not self._fits(spans, spans * size):
                self._counts["requests_refused_queue_full"] += 1
                return Submission(Verdict.QUEUE_FULL, message="the gateway's queue is full")
            self._queued_spans += spans
            self._queued_bytes += spans * size
            self._counts["requests_accepted"] += 1
            self._counts["spans_received"] += spans
            self._counts["spans_rejected"] += rejected
            for route, held in routed:
                self._enqueue(self._buffer.add(route, held))
        self._wake.set()
        return Submission(Verdict.ACCEPTED, rejected, tuple(errors))

    def count_undecodable(self) -> None:
        self._count("requests_undecodable")

    def _fits(self, spans: int, size: int) -> bool:
        # An empty queue takes any one request, so a request larger than the bounds is not
        # refused for ever.
        if self._queued_spans == 0:
            return True
        return (
            self._queued_spans + spans <= self.settings.max_queue_spans
            and self._queued_bytes + size <= self.settings.max_queue_bytes
        )

    def _route(self, project: str | None, key: str | None) -> Route:
        asked = (project, key)
        with self._lock:
            route = self._routes.get(asked)
            if route is not None:
                self._routes.move_to_end(asked)
                return route
        # Every setting but these two from the environment, as the gateway's own pipeline has.
        given: dict[str, str] = {}
        if project is not None:
            given["project"] = project
        if key is not None:
            given["api_key"] = key
        weave = WeaveSettings.from_env(self._environ, **given)  # type: ignore[arg-type]
        route = Route(weave.project_id, weave.api_key.get_secret_value(), weave)
        with self._lock:
            self._routes[asked] = route
            while len(self._routes) > self.settings.max_pipelines * _SETTINGS_CACHE_FACTOR:
                self._routes.popitem(last=False)
        return route

    # -- exporting -----------------------------------------------------------------------

    def _enqueue(self, released: Sequence[ReleasedTrace]) -> None:
        """Batches of up to the export batch size per route; called holding the lock."""
        per_route: dict[Hashable, list[HeldSpan]] = {}
        for trace in released:
            per_route.setdefault(trace.route, []).extend(trace.spans)
        batch_size = self._base.max_export_batch_size
        for route, spans in per_route.items():
            assert isinstance(route, Route)
            for start in range(0, len(spans), batch_size):
                self._jobs.put(_Job(route, spans[start : start + batch_size]))

    def _schedule(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                self._enqueue(self._buffer.due())
                wait = self._buffer.seconds_to_next()
            self._wake.wait(1.0 if wait is None else min(wait, 1.0))
            self._wake.clear()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._finish(job, self._abandon if self._stopping.is_set() else self._export)

    def _finish(self, job: _Job, handle: Callable[[_Job], None]) -> None:
        try:
            handle(job)
        except Exception:  # a bug: the worker goes on
            logger.exception("Weave gateway: an export failed")
        finally:
            with self._lock:
                self._queued_spans -= len(job.spans)
                self._queued_bytes -= job.size
                self._idle.notify_all()

    def _export(self, job: _Job) -> None:
        slot = self._slot_for(job.route)
        with slot.lock:
            timeout = job.route.settings.export_timeout_millis / 1000
            deadline = min(self._clock.monotonic() + timeout, self._drain_deadline)
            slot.pipeline.export_batch([held.span for held in job.spans], deadline)
            slot.reporter.report()

    def _abandon(self, job: _Job) -> None:
        slot = self._pipelines.get(job.route)
        spans = [held.span for held in job.spans]
        spilled = slot.pipeline.spill(spans) if slot is not None else 0
        self._count("spans_dropped_at_drain", len(spans) - spilled)

    def _slot_for(self, route: Route) -> _Slot:
        with self._lock:
            slot = self._pipelines.get(route)
            if slot is not None:
                self._pipelines.move_to_end(route)
                return slot
        pipeline = self._new_pipeline(route.settings)
        slot = _Slot(pipeline, LossReporter(pipeline.stats, route.settings.on_drop))
        evicted: list[tuple[Route, _Slot]] = []
        with self._lock:
            existing = self._pipelines.get(route)
            if existing is not None:  # another worker opened it meanwhile
                pipeline.close()
                return existing
            self._pipelines[route] = slot
            self._counts["pipelines_opened"] += 1
            while len(self._pipelines) > self.settings.max_pipelines:
                evicted.append(self._pipelines.popitem(last=False))
            self._counts["pipelines_evicted"] += len(evicted)
        for evicted_route, evicted_slot in evicted:
            # Closed once its export running now, if any, is done; not on this thread.
            threading.Thread(
                target=self._close_when_idle,
                args=(evicted_route, evicted_slot),
                name="weave-gateway-close",
                daemon=True,
            ).start()
        return slot

    def _close_when_idle(self, route: Route, slot: _Slot) -> None:
        with slot.lock:
            slot.pipeline.close()
        with self._lock:
            self._retire(route, slot)

    def _retire(self, route: Route, slot: _Slot) -> None:
        """Keep a closed pipeline's counts, so the project's totals never go down."""
        previous = self._retired.get(route.project_id, ExportStats())
        self._retired[route.project_id] = previous + slot.pipeline.stats()

    # -- reporting -----------------------------------------------------------------------

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def stats(self) -> GatewayStats:
        with self._lock:
            counts = dict(self._counts)
            counts.update(
                spans_late=self._buffer.spans_late,
                traces_timed_out=self._buffer.traces_timed_out,
                traces_exported_early=self._buffer.traces_exported_early,
                spans_held=self._buffer.held_spans,
                traces_held=self._buffer.held_traces,
                spans_queued=self._queued_spans,
                bytes_queued=self._queued_bytes,
                pipelines_open=len(self._pipelines),
            )
        return GatewayStats(**counts)

    def pipeline_stats(self) -> dict[str, ExportStats]:
        """Each project's pipeline counters, closed pipelines' included (never the keys)."""
        with self._lock:
            totals = dict(self._retired)
            slots = list(self._pipelines.items())
        for route, slot in slots:
            totals[route.project_id] = totals.get(route.project_id, ExportStats()) + (
                slot.pipeline.stats()
            )
        return totals


def _span_size(request: DecodedRequest) -> int:
    """Each span's share of the request body, for the byte bound."""
    return max(1, request.body_size // max(1, request.span_count))
