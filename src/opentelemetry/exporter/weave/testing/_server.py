"""The receiver's HTTP side: routing, auth, validation, the request log, and the server."""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import hmac
import ipaddress
import itertools
import json
import logging
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from opentelemetry.exporter.weave._call import (
    CALL_END_ROUTE,
    CALL_START_ROUTE,
    CALLS_COMPLETE_MODE_REQUIRED,
    UPSERT_BATCH_ROUTE,
)
from opentelemetry.exporter.weave._models import (
    CallBatchStartMode,
    CallEndReq,
    CallsCompleteReq,
    CallStartReq,
    CallStartRes,
    CompletedCallSchemaForInsert,
    EndedCallSchemaForInsert,
    StartedCallSchemaForInsert,
    UpsertBatchReq,
)
from opentelemetry.exporter.weave._ops import (
    FILES_CREATE_ROUTE,
    OBJ_CREATE_ROUTE,
    OBJS_QUERY_ROUTE,
    bytes_digest,
    object_digest,
)
from opentelemetry.exporter.weave.testing._store import CallStore, ObjectTypeCollisionError

__all__ = ["LocalWeaveServer", "ReceivedRequest"]

_logger = logging.getLogger(__name__)

# How often the serving thread checks for stop(); it bounds how long stop() takes.
_POLL_INTERVAL_S = 0.05
# A connection that sends nothing for this long is dropped, so stop() cannot hang on it.
_IDLE_TIMEOUT_S = 5.0
# Bodies are read, and refused ones dropped, in pieces of this size, never in one allocation
# of whatever size the client announced.
_READ_CHUNK_BYTES = 64 * 1024
# The body size limit when max_body_bytes is None: a bound on memory, not a policy.
_BODY_LIMIT_WHEN_NONE = 1024 * 1024 * 1024
# A refused body up to this size is read and dropped, so the client gets the answer and the
# connection stays usable; past it, the connection is closed after the answer.
_DISCARD_LIMIT_BYTES = 64 * 1024 * 1024
# A chunk-size line or a trailer line longer than this is malformed (http.server's own limit).
_MAX_LINE_BYTES = 65536
_MAX_TRAILERS = 100
# An exabyte; int() of the header is only attempted below this many digits.
_MAX_CONTENT_LENGTH_DIGITS = 18

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_LOGGED_REQUESTS = 10_000
DEFAULT_MAX_LOGGED_BODY_BYTES = 64 * 1024 * 1024

# What a hosted 'calls_complete' project answers on the v1 write routes (WEAVE_WIRE §1).
_CALLS_COMPLETE_MODE_REQUIRED = {
    "reason": "This project requires the calls_complete write mode",
    "error_code": CALLS_COMPLETE_MODE_REQUIRED,
}

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the receiver answered, as it arrived."""

    method: str
    # As sent, percent-encoding included.
    path: str
    status: int
    # Kept out of the repr: it may carry the API key, and reprs land in test failure output.
    headers: dict[str, str] = field(repr=False)
    # Empty when the request was refused before its body was read (bad framing, too large,
    # no route, wrong method, no credentials, calls_complete only): such a body is dropped
    # unread.
    body: bytes
    received_at: float
    # Which connection it came on: connections are numbered from 1, uniquely for the server's
    # lifetime (restarts included), so a test can tell a reused connection from a new one.
    connection: int


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    connection: int
    # The named segments of the route's path, percent-decoded, filled in by the router.
    path_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Response:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class _RefusalError(Exception):
    """Raised to answer with an error instead of going on."""

    def __init__(
        self, status: HTTPStatus, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.response = _Response(status, payload, headers or {})


def _refusal(status: HTTPStatus, reason: str) -> _RefusalError:
    return _RefusalError(status, {"reason": reason})


_Endpoint = Callable[[_Request], _Response]


def _segments(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/"))


@dataclass(frozen=True)
class _Route:
    method: str
    # Path segments; "{name}" matches any one non-empty segment, passed on percent-decoded.
    path: tuple[str, ...]
    endpoint: _Endpoint
    authenticated: bool = True
    # A v1 write route, which 'calls_complete' projects refuse.
    v1_write: bool = False

    def match(self, segments: tuple[str, ...]) -> dict[str, str] | None:
        """The decoded values of the placeholders if ``segments`` (decoded) fit this path."""
        if len(segments) != len(self.path):
            return None
        params: dict[str, str] = {}
        for template, segment in zip(self.path, segments, strict=True):
            if template.startswith("{"):
                if not segment:
                    return None
                params[template.strip("{}")] = segment
            elif template != segment:
                return None
        return params


def _decoded_segments(path: str) -> tuple[str, ...]:
    # Each segment is decoded on its own, so "%2F" inside a project name stays in that segment.
    try:
        return tuple(unquote(segment, errors="strict") for segment in path.split("/")[1:])
    except UnicodeDecodeError:
        raise _refusal(HTTPStatus.BAD_REQUEST, "Path is not percent-encoded UTF-8") from None


class _RequestLog:
    """The newest requests answered, bounded in count and in body bytes."""

    def __init__(self, max_requests: int, max_body_bytes: int) -> None:
        self._max_requests = max_requests
        self._max_body_bytes = max_body_bytes
        self._entries: deque[ReceivedRequest] = deque()
        self._body_bytes = 0
        self._lock = threading.Lock()

    def append(self, entry: ReceivedRequest) -> None:
        with self._lock:
            self._entries.append(entry)
            self._body_bytes += len(entry.body)
            # The newest entry stays even alone over the byte bound: it is what a test just
            # sent, and its body is bounded by max_body_bytes already.
            while len(self._entries) > 1 and (
                len(self._entries) > self._max_requests or self._body_bytes > self._max_body_bytes
            ):
                self._body_bytes -= len(self._entries.popleft().body)

    def entries(self) -> list[ReceivedRequest]:
        with self._lock:
            # Entries are appended as requests finish; concurrent ones may finish out of order.
            return sorted(self._entries, key=lambda entry: entry.received_at)


class _Receiver:
    """What the service does with a request, independent of the HTTP plumbing."""

    def __init__(self, store: CallStore, api_key: str | None, log: _RequestLog) -> None:
        self._store = store
        self._api_key = None if api_key is None else api_key.encode()
        self._log = log
        # Plain attributes, each read once per request, so a test can flip them while serving.
        self.calls_complete_only = False
        self.max_body_bytes: int | None = None
        self._routes = (
            _Route("POST", _segments(CALL_START_ROUTE), self._call_start, v1_write=True),
            _Route("POST", _segments(CALL_END_ROUTE), self._call_end, v1_write=True),
            _Route("POST", _segments(UPSERT_BATCH_ROUTE), self._upsert_batch, v1_write=True),
            _Route(
                "POST", ("v2", "{entity}", "{project}", "calls", "complete"), self._calls_complete
            ),
            # Not v1 writes: they serve every project kind, 'calls_complete' ones included.
            _Route("POST", ("v2", "{entity}", "{project}", "call", "start"), self._call_start_v2),
            _Route("POST", ("v2", "{entity}", "{project}", "call", "end"), self._call_end_v2),
            _Route("GET", ("calls",), self._list_calls),
            _Route("GET", ("threads",), self._list_threads),
            _Route("POST", _segments(FILES_CREATE_ROUTE), self._file_create),
            # The singular spelling some documents use, for clients that follow them.
            _Route("POST", ("file", "create"), self._file_create),
            _Route("POST", _segments(OBJ_CREATE_ROUTE), self._obj_create),
            _Route("POST", _segments(OBJS_QUERY_ROUTE), self._objs_query),
            _Route("GET", ("health",), _health, authenticated=False),
        )

    @property
    def body_limit(self) -> int:
        limit = self.max_body_bytes
        return _BODY_LIMIT_WHEN_NONE if limit is None else limit

    def requests(self) -> list[ReceivedRequest]:
        return self._log.entries()

    def admit(self, request: _Request) -> tuple[_Request, _Endpoint]:
        """The request's endpoint, and the request with its route's parameters.

        Raises ``_RefusalError`` for no route, a wrong method, missing credentials and a
        'calls_complete' project's v1 write: none of them needs the body, so none reads it.
        """
        segments = _decoded_segments(request.path)
        matching = [
            (route, params)
            for route in self._routes
            if (params := route.match(segments)) is not None
        ]
        if not matching:
            raise _RefusalError(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        chosen = next(((r, p) for r, p in matching if r.method == request.method), None)
        if chosen is None:
            allow = ", ".join(r.method for r, _ in matching)
            raise _RefusalError(
                HTTPStatus.METHOD_NOT_ALLOWED, {"detail": "Method Not Allowed"}, {"Allow": allow}
            )
        route, params = chosen
        if route.authenticated and not self._authorized(request.headers.get("authorization")):
            raise _RefusalError(
                HTTPStatus.UNAUTHORIZED,
                {"reason": "Missing or invalid API key"},
                {"WWW-Authenticate": 'Basic realm="weave"'},
            )
        if route.v1_write and self.calls_complete_only:
            raise _RefusalError(HTTPStatus.BAD_REQUEST, _CALLS_COMPLETE_MODE_REQUIRED)
        return replace(request, path_params=params), route.endpoint

    def handle(self, request: _Request, endpoint: _Endpoint) -> _Response:
        """Answer an admitted request whose body has been read."""
        try:
            response = endpoint(request)
        except _RefusalError as refusal:
            response = refusal.response
        except Exception:
            _logger.exception("local Weave receiver failed on %s %s", request.method, request.path)
            response = _Response(HTTPStatus.INTERNAL_SERVER_ERROR, {"reason": "Internal error"})
        return self.logged(request, response)

    def logged(self, request: _Request, response: _Response) -> _Response:
        # Logged before the response is sent, so a client that has its answer finds it here.
        self._log.append(
            ReceivedRequest(
                method=request.method,
                path=request.path,
                status=int(response.status),
                headers=request.headers,
                body=request.body,
                received_at=request.received_at,
                connection=request.connection,
            )
        )
        return response

    def _authorized(self, header: str | None) -> bool:
        if self._api_key is None:
            return True
        if header is None:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                presented = base64.b64decode(credentials.strip(), validate=True)
            except ValueError:
                return False
            expected = b"api:" + self._api_key
        elif scheme == "bearer":
            # http.server decodes header bytes as Latin-1; this recovers the bytes sent.
            presented = credentials.strip().encode("latin-1")
            expected = self._api_key
        else:
            return False
        return hmac.compare_digest(presented, expected)

    def _call_start(self, request: _Request) -> _Response:
        start = _validated(CallStartReq, request.body).start
        _require_lowercase_ids(start)
        return _Response(HTTPStatus.OK, self._put_start(start, _as_sent(request.body)["start"]))

    def _call_end(self, request: _Request) -> _Response:
        end = _validated(CallEndReq, request.body).end
        _require_lowercase_ids(end)
        return _Response(HTTPStatus.OK, self._put_end(end, _as_sent(request.body)["end"]))

    def _upsert_batch(self, request: _Request) -> _Response:
        batch = _validated(UpsertBatchReq, request.body).batch
        halves = [
            item.req.start if isinstance(item, CallBatchStartMode) else item.req.end
            for item in batch
        ]
        # Every item is checked before any is stored, so a refused batch leaves no trace.
        for half in halves:
            _require_lowercase_ids(half)
        results = [
            self._put_start(half, sent["req"]["start"])
            if isinstance(half, StartedCallSchemaForInsert)
            else self._put_end(half, sent["req"]["end"])
            for half, sent in zip(halves, _as_sent(request.body)["batch"], strict=True)
        ]
        return _Response(HTTPStatus.OK, {"res": results})

    def _calls_complete(self, request: _Request) -> _Response:
        batch = _validated(CallsCompleteReq, request.body).batch
        for call in batch:
            _require_path_project(request, call)
            _require_lowercase_ids(call)
        for call, sent in zip(batch, _as_sent(request.body)["batch"], strict=True):
            self._store.put_complete(call.project_id, call.id, sent)
        return _Response(HTTPStatus.OK, {})

    def _call_start_v2(self, request: _Request) -> _Response:
        start = _validated(CallStartReq, request.body).start
        _require_path_project(request, start)
        _require_lowercase_ids(start)
        return _Response(HTTPStatus.OK, self._put_start(start, _as_sent(request.body)["start"]))

    def _call_end_v2(self, request: _Request) -> _Response:
        end = _validated(CallEndReq, request.body).end
        _require_path_project(request, end)
        _require_lowercase_ids(end)
        if not self._store.put_end_of_started(
            end.project_id, end.id, _as_sent(request.body)["end"]
        ):
            # The wording of Weave's in-memory server (NotFoundError, answered as 404).
            reason = f"Cannot end call {end.id}: no start found in project {end.project_id}"
            raise _refusal(HTTPStatus.NOT_FOUND, reason)
        return _Response(HTTPStatus.OK, {})

    def _put_start(self, start: StartedCallSchemaForInsert, sent: dict[str, Any]) -> dict[str, str]:
        self._store.put_start(start.project_id, start.id, sent)
        return CallStartRes(id=start.id, trace_id=start.trace_id).model_dump()

    def _put_end(self, end: EndedCallSchemaForInsert, sent: dict[str, Any]) -> dict[str, str]:
        self._store.put_end(end.project_id, end.id, sent)
        return {}

    def _list_calls(self, request: _Request) -> _Response:
        query = parse_qs(request.query)
        project_id = query["project_id"][-1] if "project_id" in query else None
        op_name = query["op_name"][-1] if "op_name" in query else None
        return _Response(HTTPStatus.OK, {"calls": self._store.calls(project_id, op_name)})

    def _list_threads(self, request: _Request) -> _Response:
        query = parse_qs(request.query)
        project_id = query["project_id"][-1] if "project_id" in query else None
        return _Response(HTTPStatus.OK, {"threads": self._store.threads(project_id)})

    def _file_create(self, request: _Request) -> _Response:
        fields, files = _form_data(request)
        missing = [name for name in ("project_id",) if name not in fields]
        missing += [name for name in ("file",) if name not in files]
        if missing:
            detail = [
                {"type": "missing", "loc": ["body", name], "msg": "Field required"}
                for name in missing
            ]
            raise _RefusalError(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": detail})
        file_name, content = files["file"]
        digest = bytes_digest(content)
        self._store.put_file(fields["project_id"], digest, file_name, content)
        return _Response(HTTPStatus.OK, {"digest": digest})

    def _obj_create(self, request: _Request) -> _Response:
        obj = _validated(_ObjCreateReq, request.body).obj
        val = _as_sent(request.body)["obj"]["val"]
        digest = object_digest(val)
        if obj.expected_digest is not None and obj.expected_digest != digest:
            reason = f"expected_digest {obj.expected_digest!r} is not the value's {digest!r}"
            raise _refusal(HTTPStatus.BAD_REQUEST, reason)
        try:
            self._store.put_obj(
                obj.project_id,
                obj.object_id,
                val,
                digest=digest,
                kind=_kind(val),
                created_at=datetime.now(timezone.utc).isoformat(),
            )
        except ObjectTypeCollisionError as collision:
            raise _refusal(HTTPStatus.BAD_REQUEST, str(collision)) from None
        return _Response(HTTPStatus.OK, {"digest": digest, "object_id": obj.object_id})

    def _objs_query(self, request: _Request) -> _Response:
        query = _validated(_ObjQueryReq, request.body)
        version_filter = query.filter or _ObjectVersionFilter()
        objs = self._store.objs(
            query.project_id,
            object_ids=version_filter.object_ids,
            kind="op" if version_filter.is_op else None,
            latest_only=bool(version_filter.latest_only),
        )
        if version_filter.is_op is False:
            objs = [obj for obj in objs if obj["kind"] != "op"]
        objs = objs[query.offset or 0 :]
        if query.limit is not None:
            objs = objs[: query.limit]
        if query.metadata_only:
            objs = [obj | {"val": {}} for obj in objs]
        return _Response(HTTPStatus.OK, {"objs": objs})


class _StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ObjSchemaForInsert(_StrictModel):
    project_id: str
    # The service's object id check: 1 to 128 characters of [\w._-].
    object_id: str = Field(min_length=1, max_length=128, pattern=r"^[\w._-]+$")
    val: Any
    builtin_object_class: str | None = None
    expected_digest: str | None = None


class _ObjCreateReq(_StrictModel):
    obj: _ObjSchemaForInsert


class _ObjectVersionFilter(_StrictModel):
    base_object_classes: list[str] | None = None
    exclude_base_object_classes: list[str] | None = None
    leaf_object_classes: list[str] | None = None
    object_ids: list[str] | None = None
    is_op: bool | None = None
    latest_only: bool | None = None
    tags: list[str] | None = None
    aliases: list[str] | None = None


class _ObjQueryReq(_StrictModel):
    project_id: str
    filter: _ObjectVersionFilter | None = None
    limit: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    sort_by: list[dict[str, str]] | None = None
    metadata_only: bool | None = False
    include_storage_size: bool | None = False
    include_tags_and_aliases: bool | None = False


def _kind(val: Any) -> str:
    """ "op" for an op's value, as the service tells them (``get_kind``), else "object"."""
    if isinstance(val, dict) and isinstance(weave_type := val.get("weave_type"), dict):
        return "op" if weave_type.get("type") == "Op" else "object"
    return "object"


def _form_data(request: _Request) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A ``multipart/form-data`` body's text fields, and its files as (file name, content)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data") or "boundary=" not in (
        content_type.lower()
    ):
        raise _refusal(HTTPStatus.UNPROCESSABLE_ENTITY, "Expected a multipart/form-data body")
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(
        f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
        + request.body
    )
    if message.defects or not message.is_multipart():
        raise _refusal(HTTPStatus.BAD_REQUEST, "Malformed multipart/form-data body")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        content = part.get_payload(decode=True)
        if part.defects or not isinstance(name, str) or not isinstance(content, bytes):
            raise _refusal(HTTPStatus.BAD_REQUEST, "Malformed multipart/form-data part")
        file_name = part.get_filename()
        if file_name is None:
            try:
                fields[name] = content.decode()
            except UnicodeDecodeError:
                raise _refusal(HTTPStatus.BAD_REQUEST, f"Field {name!r} is not UTF-8") from None
        else:
            files[name] = (file_name, content)
    return fields, files


def _health(request: _Request) -> _Response:
    return _Response(HTTPStatus.OK, {"status": "ok"})


def _as_sent(body: bytes) -> dict[str, Any]:
    # The client's own JSON, not the model's re-serialisation: tests of a client must see
    # exactly what it wrote (omitted keys, timestamp offsets, extra summary keys).
    sent: dict[str, Any] = json.loads(body)
    return sent


def _validated(model: type[_Model], body: bytes) -> _Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        # ValidationError.json() makes inputs and error contexts of any type JSON-safe.
        errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False))
        detail = [{**error, "loc": ["body", *error["loc"]]} for error in errors]
        raise _RefusalError(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": detail}) from None


def _require_path_project(
    request: _Request,
    call: StartedCallSchemaForInsert | EndedCallSchemaForInsert | CompletedCallSchemaForInsert,
) -> None:
    """Refuse a body whose call belongs to another project than the v2 route's path names."""
    project_id = f"{request.path_params['entity']}/{request.path_params['project']}"
    if call.project_id != project_id:
        reason = f"project_id {call.project_id!r} does not match the URL's {project_id!r}"
        raise _refusal(HTTPStatus.BAD_REQUEST, reason)


def _require_lowercase_ids(
    call: StartedCallSchemaForInsert | EndedCallSchemaForInsert | CompletedCallSchemaForInsert,
) -> None:
    ids: dict[str, str | None] = {"id": call.id, "trace_id": call.trace_id}
    if not isinstance(call, EndedCallSchemaForInsert):
        ids["parent_id"] = call.parent_id
    for name, value in ids.items():
        if value is not None and value != value.lower():
            reason = f"{name} must be lowercase, got {value!r}"
            raise _RefusalError(HTTPStatus.BAD_REQUEST, {"reason": reason})


@dataclass(frozen=True)
class _Chunked:
    """A body sent with ``Transfer-Encoding: chunked``: its size is known only once read."""


_Framing = int | _Chunked


class _HTTPServer(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops or resets connections when many exporter
    # threads send at once; connections past max_connections wait here and in process_request.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        receiver: _Receiver,
        *,
        max_connections: int,
        connection_numbers: Iterator[int],
    ) -> None:
        self.receiver = receiver
        self.address_family = _address_family(address[0])
        self._slots = threading.BoundedSemaphore(max_connections)
        self._closing = threading.Event()
        self._connection_numbers = connection_numbers
        # Read by handlers: while a connection waits for a slot, answers close theirs.
        self.connection_waiting = False
        # Connections between requests, which stop() wakes instead of waiting out their
        # idle timeout.
        self._idle: set[socket.socket] = set()
        self._idle_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a reverse DNS query that can take
        # seconds on some machines; the bound address is all this server needs.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = host
        self.server_port = port

    def next_connection_number(self) -> int:
        # next() on itertools.count is atomic, so handler threads may call it concurrently.
        return next(self._connection_numbers)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False) and not self._wait_for_slot():
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def _wait_for_slot(self) -> bool:
        """Wait until a connection ends; False if the server closes first.

        Waiting here stops the accept loop, so further connections wait in the backlog.
        """
        self.connection_waiting = True
        try:
            while not self._slots.acquire(timeout=_POLL_INTERVAL_S):
                if self._closing.is_set():
                    return False
        finally:
            self.connection_waiting = False
        return True

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def await_request(self, connection: socket.socket) -> bool:
        """Mark a connection as between requests; False once the server is closing."""
        with self._idle_lock:
            if self._closing.is_set():
                return False
            self._idle.add(connection)
        return True

    def request_arrived(self, connection: socket.socket) -> None:
        with self._idle_lock:
            self._idle.discard(connection)

    def stop_serving(self) -> None:
        """Stop serving: requests in flight finish, idle and waiting connections are dropped."""
        with self._idle_lock:
            self._closing.set()
            for connection in self._idle:
                # Wakes the handler's read with end-of-file instead of its idle timeout.
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self.shutdown()
        # Waits for requests in flight, so everything answered is in calls() and requests().
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets or vanishes mid-request is routine for a test server; the
        # default prints a traceback to stderr.
        _logger.debug(
            "local Weave receiver: connection from %s failed", client_address, exc_info=True
        )


def _address_family(host: str) -> socket.AddressFamily:
    try:
        literal = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        if not host:
            return socket.AF_INET
        family: socket.AddressFamily = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
        return family
    return socket.AF_INET6 if literal.version == 6 else socket.AF_INET


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = _IDLE_TIMEOUT_S
    # Keep-alive, as the hosted service speaks; every answer carries Content-Length.
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self._connection = self.server.next_connection_number()

    def handle(self) -> None:
        # BaseHTTPRequestHandler.handle, with each wait for a request known to the server.
        self.close_connection = False
        try:
            while not self.close_connection and self.server.await_request(self.connection):
                self.handle_one_request()
        finally:
            self.server.request_arrived(self.connection)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: requests() is the log; a line per request on stderr is noise in tests."""

    def _serve(self) -> None:
        self.server.request_arrived(self.connection)
        received_at = time.monotonic()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        target = urlsplit(self.path)
        request = _Request(
            self.command, target.path, target.query, headers, b"", received_at, self._connection
        )
        receiver = self.server.receiver
        framing: _Framing | None = None
        try:
            framing = _framing(headers)
            limit = receiver.body_limit
            # Checked from Content-Length, before auth or routing, as a proxy in front of the
            # service would.
            if isinstance(framing, int) and framing > limit:
                raise _too_large(framing, limit)
            admitted, endpoint = receiver.admit(request)
        except _RefusalError as refusal:
            self._refuse_unread(receiver.logged(request, refusal.response), framing)
            return
        try:
            body = self._read_body(framing, limit, keep=True)
        except _RefusalError as refusal:
            # The body was refused part-read: the connection is closed after the answer.
            self._answer(receiver.logged(request, refusal.response))
            return
        self._answer(receiver.handle(replace(admitted, body=body), endpoint))

    def _answer(self, response: _Response) -> None:
        # A connection kept open would hold a slot another connection is waiting for.
        if self.server.connection_waiting or self.server.closing:
            self.close_connection = True
        encoded = json.dumps(response.payload).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(encoded)
        # Sent before a refused body is drained, so the client is not kept waiting for it.
        self.wfile.flush()

    def _refuse_unread(self, response: _Response, framing: _Framing | None) -> None:
        """Answer a refusal decided before the body was read, then read the body through.

        Reading it lets the connection carry the next request; closing with it unread would
        reset the connection, and the client could see a connection error instead of the
        answer. Past the discard limit, or with its framing unknown, the connection is closed.
        """
        if framing is None or (isinstance(framing, int) and framing > _DISCARD_LIMIT_BYTES):
            self.close_connection = True
            self._answer(response)
            return
        self._answer(response)
        # A body refused while being dropped closes the connection; it was answered already.
        with contextlib.suppress(_RefusalError):
            self._read_body(framing, _DISCARD_LIMIT_BYTES, keep=False)

    def _read_body(self, framing: _Framing, limit: int, *, keep: bool) -> bytes:
        """The body, read in pieces; one it refuses leaves the connection unusable, so closed."""
        pieces = self._chunks() if isinstance(framing, _Chunked) else self._exactly(framing)
        body = bytearray()
        size = 0
        try:
            for piece in pieces:
                size += len(piece)
                if size > limit:
                    # Only a chunked body gets here: a sized one was checked before.
                    raise _too_large(None, limit)
                if keep:
                    body += piece
        except _RefusalError:
            self.close_connection = True
            raise
        return bytes(body)

    def _exactly(self, size: int) -> Iterator[bytes]:
        while size > 0:
            piece = self.rfile.read(min(size, _READ_CHUNK_BYTES))
            if not piece:
                raise _refusal(HTTPStatus.BAD_REQUEST, "Body ended before its announced size")
            size -= len(piece)
            yield piece

    def _chunks(self) -> Iterator[bytes]:
        while (size := _chunk_size(self._line())) > 0:
            yield from self._exactly(size)
            if self._line() != b"":
                raise _refusal(HTTPStatus.BAD_REQUEST, "Chunk not followed by CRLF")
        # Trailer fields, up to the empty line, are read and ignored.
        for _ in range(_MAX_TRAILERS):
            if self._line() == b"":
                return
        raise _refusal(HTTPStatus.BAD_REQUEST, "Too many trailer fields")

    def _line(self) -> bytes:
        line = self.rfile.readline(_MAX_LINE_BYTES + 1)
        if len(line) > _MAX_LINE_BYTES or not line.endswith(b"\n"):
            raise _refusal(HTTPStatus.BAD_REQUEST, "Chunked body line too long or cut short")
        return line.rstrip(b"\r\n")


def _framing(headers: Mapping[str, str]) -> _Framing:
    """How the body's end is found: its size from Content-Length, or chunked."""
    encoding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if encoding is not None:
        if length is not None:
            # Two framings that may disagree are how requests are smuggled past proxies.
            raise _refusal(HTTPStatus.BAD_REQUEST, "Both Content-Length and Transfer-Encoding")
        if [token.strip().lower() for token in encoding.split(",")] != ["chunked"]:
            raise _RefusalError(
                HTTPStatus.NOT_IMPLEMENTED,
                {"reason": f"Unsupported Transfer-Encoding: {encoding!r}"},
            )
        return _Chunked()
    if length is None:
        return 0
    # Repeated headers arrive joined by commas; identical repeats are allowed (RFC 9110 8.6).
    values = {value.strip() for value in length.split(",")}
    if len(values) != 1:
        raise _refusal(HTTPStatus.BAD_REQUEST, "Conflicting Content-Length values")
    (value,) = values
    if not (value.isascii() and value.isdigit()):
        raise _refusal(HTTPStatus.BAD_REQUEST, "Invalid Content-Length")
    if len(value) > _MAX_CONTENT_LENGTH_DIGITS:
        # int() refuses very long digit strings; a size this large is over any limit.
        raise _refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request body too large")
    return int(value)


def _chunk_size(line: bytes) -> int:
    text = line.partition(b";")[0].strip()
    if not text or len(text) > 16 or text.strip(b"0123456789abcdefABCDEF"):
        raise _refusal(HTTPStatus.BAD_REQUEST, "Invalid chunk size")
    return int(text, 16)


def _too_large(size: int | None, limit: int) -> _RefusalError:
    """413; ``size`` is None for a chunked body, refused once it grew past the limit."""
    reason = (
        f"Request body too large: over {limit} bytes"
        if size is None
        else f"Request body too large: {size} bytes > {limit}"
    )
    return _refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, reason)


class LocalWeaveServer:
    """A local stand-in for Weave's trace service, for demos and tests.

    Serves the write routes ``POST /call/start``, ``POST /call/end``,
    ``POST /call/upsert_batch``, ``POST /v2/{entity}/{project}/calls/complete`` and the v2
    single-call routes ``POST /v2/{entity}/{project}/call/start`` and
    ``POST /v2/{entity}/{project}/call/end`` (validated as the service does; a v2 end whose
    start is not stored answers 404 and stores nothing; a started call without its end is
    listed as running), the object routes op refs need (``POST /files/create``, multipart;
    ``POST /obj/create``, which refuses a name holding another type of object with 400;
    ``POST /objs/query``), ``GET /calls?project_id=entity/project[&op_name=<ref>]`` and
    ``GET /health`` on a daemon thread, and keeps calls and objects in SQLite (``db_path``, in
    memory by default). With
    ``api_key`` set, requests other than ``/health`` need
    ``Authorization: Basic base64("api:<key>")`` or ``Bearer <key>``. Received calls and
    requests stay readable after ``stop()``, and a restarted server listens on the same port.

    ``calls_complete_only`` makes it a new hosted 'calls_complete' project: the v1 write
    routes answer 400 with ``error_code`` ``CALLS_COMPLETE_MODE_REQUIRED`` (after auth, before
    validation); the v2 routes are served as ever. ``max_body_bytes`` answers 413 to any
    request with a larger body, before auth and routing, and stores nothing of it (``None``:
    up to 1 GiB). Both can be changed while serving.

    It speaks HTTP/1.1 with keep-alive, reads ``Content-Length`` and chunked bodies, and
    decides every refusal (size, route, method, auth, write mode) before reading the body,
    which it then drops unread in bounded pieces. At most ``max_connections`` connections are
    served at once; more wait to be accepted (and, while one waits, answers close their
    connection so that it gets a slot soon). ``requests()`` keeps the newest
    ``max_logged_requests`` requests whose bodies add up to at most ``max_logged_body_bytes``.
    ``host`` may be an IPv6 address (``"::1"``); ``url`` brackets it.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        db_path: str = ":memory:",
        calls_complete_only: bool = False,
        max_body_bytes: int | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_logged_requests: int = DEFAULT_MAX_LOGGED_REQUESTS,
        max_logged_body_bytes: int = DEFAULT_MAX_LOGGED_BODY_BYTES,
    ) -> None:
        for name, value in (
            ("max_connections", max_connections),
            ("max_logged_requests", max_logged_requests),
            ("max_logged_body_bytes", max_logged_body_bytes),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self._address = (host, port)
        self._store = CallStore(db_path)
        log = _RequestLog(max_logged_requests, max_logged_body_bytes)
        self._receiver = _Receiver(self._store, api_key, log)
        self.calls_complete_only = calls_complete_only
        self.max_body_bytes = max_body_bytes
        self._max_connections = max_connections
        # Numbers go on across restarts, so requests() never shows two connections as one.
        self._connection_numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._running: tuple[_HTTPServer, threading.Thread] | None = None

    @property
    def calls_complete_only(self) -> bool:
        """Whether the v1 write routes refuse with ``CALLS_COMPLETE_MODE_REQUIRED``."""
        return self._receiver.calls_complete_only

    @calls_complete_only.setter
    def calls_complete_only(self, value: bool) -> None:
        self._receiver.calls_complete_only = value

    @property
    def max_body_bytes(self) -> int | None:
        """The largest body accepted, in bytes; ``None`` for no limit."""
        return self._receiver.max_body_bytes

    @max_body_bytes.setter
    def max_body_bytes(self, value: int | None) -> None:
        if value is not None and value < 0:
            raise ValueError(f"max_body_bytes must be None or at least 0, got {value}")
        self._receiver.max_body_bytes = value

    @property
    def url(self) -> str:
        with self._lock:
            if self._running is None:
                raise RuntimeError("LocalWeaveServer is not running; call start() first")
            host, port = self._running[0].server_address[:2]
        if ":" in str(host):
            # An IPv6 literal, bracketed; a zone id's "%" is itself percent-encoded (RFC 6874).
            return f"http://[{str(host).replace('%', '%25')}]:{port}"
        return f"http://{host!s}:{port}"

    def start(self) -> LocalWeaveServer:
        with self._lock:
            if self._running is not None:
                raise RuntimeError("LocalWeaveServer is already running")
            httpd = _HTTPServer(
                self._address,
                self._receiver,
                max_connections=self._max_connections,
                connection_numbers=self._connection_numbers,
            )
            # A port chosen by the OS (port 0) is kept, so a restart keeps the URL clients use.
            self._address = (self._address[0], httpd.server_port)
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_S},
                name=f"LocalWeaveServer:{httpd.server_port}",
                daemon=True,
            )
            thread.start()
            self._running = (httpd, thread)
        return self

    def stop(self) -> None:
        # The lock is held throughout so that a concurrent start() cannot bind the port
        # before it is released.
        with self._lock:
            if self._running is None:
                return
            httpd, thread = self._running
            self._running = None
            httpd.stop_serving()
            thread.join()

    def __enter__(self) -> LocalWeaveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def calls(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Calls that have a start, in start order: start fields merged with end fields.

        Values are the JSON the client sent. Start fields it left out, and end fields until
        the end arrives, are ``None``; ``summary`` is ``{}`` until then.
        """
        return self._store.calls(project_id)

    def threads(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Threads as Weave's Threads view lists them (``GET /threads``): through their turn
        calls only, each with its turn count, first input and last output."""
        return self._store.threads(project_id)

    def calls_of_op(self, op_name: str, project_id: str | None = None) -> list[dict[str, Any]]:
        """The calls whose ``op_name`` is ``op_name``; ``weave:///e/p/op/name:*`` for those of
        any version of that op (as ``GET /calls?op_name=`` filters them)."""
        return self._store.calls(project_id, op_name)

    def ops(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """The op objects created (``POST /obj/create``), every version, oldest first, as
        ``POST /objs/query`` answers them."""
        return self._store.objs(project_id, kind="op")

    def files(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """The files uploaded (``POST /files/create``): project_id, digest, name, content."""
        return self._store.files(project_id)

    def orphan_ends(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Ends whose start never arrived, which Weave stores but never shows."""
        return self._store.orphan_ends(project_id)

    def start_writes(self, project_id: str | None = None) -> dict[str, int]:
        """How many times each call id's start was stored, by any route.

        A retried or re-sent start replaces the stored one, so ``calls()`` cannot show it; a
        count above 1 here can. Without ``project_id``, counts of one id in several projects
        are added up.
        """
        return self._store.start_writes(project_id)

    def end_writes(self, project_id: str | None = None) -> dict[str, int]:
        """How many times each call id's end was stored, by any route (as ``start_writes``)."""
        return self._store.end_writes(project_id)

    def requests(self) -> list[ReceivedRequest]:
        """The requests answered so far, in arrival order: the newest, within the log's bounds.

        Requests refused before their body was read are kept without it.
        """
        return self._receiver.requests()
