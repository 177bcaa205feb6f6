"""Weave's ``SqliteTraceServer`` (weave 0.52.42) behind the trace service's HTTP routes.

    python -m tests.weave_server.app --api-key KEY [--port 0] [--db PATH]
        [--calls-complete-only ENTITY/PROJECT ...]

Runs in the ``weave_sqlite`` environment. Prints the bound port, alone on a line, once it
accepts connections; ``--port 0`` picks a free one. Serves until it is terminated.

Everything a request meets is Weave's own code: its request models validate the bodies (a
refusal answers 422 with FastAPI's ``{"detail": [...]}``, as the service does), its
``ExternalTraceServer`` turns ``entity/project`` and the refs inside bodies into internal ids
and back (as the service does before its storage), its error registry maps exceptions to
statuses and bodies. Only the routing, auth and the id scheme are this file's.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import json
import re
import sys
import tempfile
import traceback
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def _without_evaluation_worker() -> None:
    """The server module imports the model-evaluation worker for one type; that worker
    imports Weave's scorers, which need torch and transformers. No call route uses it."""
    name = "weave.trace_server.workers.evaluate_model_worker.evaluate_model_worker"
    stub = types.ModuleType(name)

    class EvaluateModelDispatcher:
        """Stand-in type: evaluations are not served here."""

    stub.EvaluateModelDispatcher = EvaluateModelDispatcher  # type: ignore[attr-defined]
    sys.modules[name] = stub


_without_evaluation_worker()

# Imported after the stub: the server module's import chain reaches the worker.
from pydantic import BaseModel, ValidationError  # noqa: E402
from weave.trace_server import trace_server_interface as tsi  # noqa: E402
from weave.trace_server.errors import (  # noqa: E402
    CallsCompleteModeRequired,
    InvalidRequest,
    RequestTooLarge,
    handle_server_exception,
)
from weave.trace_server.external_to_internal_trace_server_adapter import (  # noqa: E402
    ExternalTraceServer,
    IdConverter,
)
from weave.trace_server.sqlite_trace_server import SqliteTraceServer  # noqa: E402

MAX_REQUEST_BYTES = 32 * 1024 * 1024
"""The service's request limit (a larger body answers 413)."""


class HexProjectIds(IdConverter):
    """Internal ids as the hex of the external ones: reversible, and free of the ``/`` and
    ``:`` that would break an internal ref ``weave-trace-internal:///<id>/op/<name>:<digest>``."""

    def ext_to_int_project_id(self, project_id: str) -> str:
        entity, _, project = project_id.partition("/")
        if not entity or not project or "/" in project:
            raise InvalidRequest(f"project_id must be 'entity/project', got {project_id!r}")
        return project_id.encode().hex()

    def int_to_ext_project_id(self, project_id: str) -> str | None:
        return bytes.fromhex(project_id).decode()

    def ext_to_int_run_id(self, run_id: str) -> str:
        return run_id.encode().hex()

    def int_to_ext_run_id(self, run_id: str) -> str:
        return bytes.fromhex(run_id).decode()

    def ext_to_int_user_id(self, user_id: str) -> str:
        return user_id

    def int_to_ext_user_id(self, user_id: str) -> str:
        return user_id


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"


def json_answer(status: int, value: Any) -> Answer:
    return Answer(status, json.dumps(value).encode())


def model_answer(result: BaseModel) -> Answer:
    return Answer(200, result.model_dump_json().encode())


def lines_answer(results: Iterable[BaseModel]) -> Answer:
    """A streamed query's answer: one JSON document per line, as the service streams it."""
    body = b"".join(result.model_dump_json().encode() + b"\n" for result in results)
    return Answer(200, body, "application/jsonl")


@dataclass(frozen=True)
class Request:
    path_params: dict[str, str]
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Handler = Callable[[Request], Answer]


class Routes:
    """The service's routes over one trace server; v1 write routes refuse the projects in
    ``calls_complete_only`` with Weave's own ``CALLS_COMPLETE_MODE_REQUIRED`` error."""

    def __init__(self, server: ExternalTraceServer, calls_complete_only: set[str]) -> None:
        self._server = server
        self._calls_complete_only = calls_complete_only
        project = r"/v2/(?P<entity>[^/]+)/(?P<project>[^/]+)"
        self.table: list[tuple[re.Pattern[str], Handler]] = [
            (re.compile(path), handler)
            for path, handler in (
                ("/call/start", self.call_start),
                ("/call/end", self.call_end),
                ("/call/upsert_batch", self.upsert_batch),
                (f"{project}/calls/complete", self.calls_complete),
                (f"{project}/call/start", self.call_start_v2),
                (f"{project}/call/end", self.call_end_v2),
                (f"{project}/ops", self.op_create),
                # Weave's SDK posts files to /files/create; the OTel ingestion path to /file/create.
                ("/files?/create", self.file_create),
                ("/obj/create", self.obj_create),
                ("/obj/read", self.obj_read),
                ("/objs/query", self.objs_query),
                ("/calls/query", self.calls_query),
                ("/calls/stream_query", self.calls_stream_query),
                ("/calls/query_stats", self.calls_query_stats),
                ("/threads/stream_query", self.threads_stream_query),
            )
        ]

    def handler_for(self, path: str) -> tuple[Handler, dict[str, str]] | None:
        for pattern, handler in self.table:
            if match := pattern.fullmatch(path):
                return handler, match.groupdict()
        return None

    def _v1_write(self, project_ids: Iterable[str]) -> None:
        for project_id in project_ids:
            if project_id in self._calls_complete_only:
                raise CallsCompleteModeRequired(project_id)

    def call_start(self, request: Request) -> Answer:
        req = tsi.CallStartReq.model_validate(request.json())
        self._v1_write([req.start.project_id])
        return model_answer(self._server.call_start(req))

    def call_end(self, request: Request) -> Answer:
        req = tsi.CallEndReq.model_validate(request.json())
        self._v1_write([req.end.project_id])
        return model_answer(self._server.call_end(req))

    def upsert_batch(self, request: Request) -> Answer:
        req = tsi.CallCreateBatchReq.model_validate(request.json())
        self._v1_write(
            item.req.start.project_id if item.mode == "start" else item.req.end.project_id
            for item in req.batch
        )
        # Item by item through the adapter, in order: its interface declares call_start_batch
        # but does not convert ids there (the inherited stub answers None).
        results: list[tsi.CallStartRes | tsi.CallEndRes] = [
            self._server.call_start(item.req)
            if item.mode == "start"
            else self._server.call_end(item.req)
            for item in req.batch
        ]
        return model_answer(tsi.CallCreateBatchRes(res=results))

    def calls_complete(self, request: Request) -> Answer:
        req = tsi.CallsUpsertCompleteReq.model_validate(request.json())
        _same_project(request, (call.project_id for call in req.batch))
        return model_answer(self._server.calls_complete(req))

    def call_start_v2(self, request: Request) -> Answer:
        req = tsi.CallStartV2Req.model_validate(request.json())
        _same_project(request, [req.start.project_id])
        return model_answer(self._server.call_start_v2(req))

    def call_end_v2(self, request: Request) -> Answer:
        req = tsi.CallEndV2Req.model_validate(request.json())
        _same_project(request, [req.end.project_id])
        return model_answer(self._server.call_end_v2(req))

    def op_create(self, request: Request) -> Answer:
        body = tsi.OpCreateBody.model_validate(request.json())
        req = tsi.OpCreateReq(project_id=_path_project(request), **body.model_dump())
        return model_answer(self._server.op_create(req))

    def file_create(self, request: Request) -> Answer:
        fields = multipart_fields(request.content_type, request.body)
        missing = [name for name in ("project_id", "file") if name not in fields]
        if missing:
            return json_answer(
                422,
                {
                    "detail": [
                        {"type": "missing", "loc": ["body", name], "msg": "Field required"}
                        for name in missing
                    ]
                },
            )
        filename, content = fields["file"]
        expected = fields.get("expected_digest")
        req = tsi.FileCreateReq(
            project_id=fields["project_id"][1].decode(),
            name=filename or "file",
            content=content,
            expected_digest=expected[1].decode() if expected else None,
        )
        return model_answer(self._server.file_create(req))

    def obj_create(self, request: Request) -> Answer:
        return model_answer(
            self._server.obj_create(tsi.ObjCreateReq.model_validate(request.json()))
        )

    def obj_read(self, request: Request) -> Answer:
        return model_answer(self._server.obj_read(tsi.ObjReadReq.model_validate(request.json())))

    def objs_query(self, request: Request) -> Answer:
        return model_answer(self._server.objs_query(tsi.ObjQueryReq.model_validate(request.json())))

    def calls_query(self, request: Request) -> Answer:
        req = tsi.CallsQueryReq.model_validate(request.json())
        return model_answer(self._server.calls_query(req))

    def calls_stream_query(self, request: Request) -> Answer:
        req = tsi.CallsQueryReq.model_validate(request.json())
        return lines_answer(self._server.calls_query_stream(req))

    def calls_query_stats(self, request: Request) -> Answer:
        req = tsi.CallsQueryStatsReq.model_validate(request.json())
        return model_answer(self._server.calls_query_stats(req))

    def threads_stream_query(self, request: Request) -> Answer:
        req = tsi.ThreadsQueryReq.model_validate(request.json())
        return lines_answer(self._server.threads_query_stream(req))


def _path_project(request: Request) -> str:
    return f"{request.path_params['entity']}/{request.path_params['project']}"


def _same_project(request: Request, project_ids: Iterable[str]) -> None:
    """The v2 routes name the project in the path; a body for another one is refused."""
    path_project = _path_project(request)
    for project_id in project_ids:
        if project_id != path_project:
            raise InvalidRequest(f"project_id {project_id!r} is not the path's {path_project!r}")


def multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body's fields: name -> (filename, content)."""
    if not content_type.startswith("multipart/form-data"):
        return {}
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def authorized(header: str | None, api_key: str) -> bool:
    """HTTP Basic ``api:<key>`` (what Weave's SDK sends) or ``Bearer <key>``."""
    if header is None:
        return False
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        return credentials == api_key
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except ValueError:
        return False
    return user == "api" and password == api_key


def error_answer(error: Exception) -> Answer:
    if isinstance(error, ValidationError):
        return json_answer(422, {"detail": json.loads(error.json(include_url=False))})
    handled = handle_server_exception(error)
    if handled.status_code >= 500:
        traceback.print_exception(error, file=sys.stderr)
    return json_answer(handled.status_code, handled.message)


def make_handler(
    routes: Routes, internal: SqliteTraceServer, api_key: str
) -> type[BaseHTTPRequestHandler]:
    class TraceServiceHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's connection pool expects

        def do_POST(self) -> None:
            self._send(self._answer())

        def _answer(self) -> Answer:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self.close_connection = True
                return error_answer(RequestTooLarge(f"{length} bytes"))
            body = self.rfile.read(length)
            if not authorized(self.headers.get("Authorization"), api_key):
                return json_answer(401, {"reason": "Unauthorized"})
            found = routes.handler_for(self.path.split("?", 1)[0])
            if found is None:
                return json_answer(404, {"detail": "Not Found"})
            handler, path_params = found
            request = Request(path_params, self.headers.get("Content-Type", ""), body)
            try:
                return handler(request)
            except Exception as error:  # every failure becomes an HTTP answer, as in the service
                return error_answer(error)
            finally:
                # Each request has its own thread, hence its own SQLite connection.
                internal.close()

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads stdout for the port, and stderr only on a failure."""

    return TraceServiceHandler


@contextmanager
def trace_service(argv: list[str]) -> Iterator[ThreadingHTTPServer]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--db", help="SQLite file (default: a new temporary one)")
    parser.add_argument(
        "--calls-complete-only",
        action="append",
        default=[],
        metavar="ENTITY/PROJECT",
        help="a project whose v1 write routes answer CALLS_COMPLETE_MODE_REQUIRED",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="weave-sqlite-") as scratch:
        internal = SqliteTraceServer(args.db or str(Path(scratch) / "trace.db"))
        internal.setup_tables()
        internal.close()
        routes = Routes(
            ExternalTraceServer(internal, HexProjectIds()), set(args.calls_complete_only)
        )
        http = ThreadingHTTPServer(
            ("127.0.0.1", args.port), make_handler(routes, internal, args.api_key)
        )
        http.daemon_threads = True
        with http:
            yield http


def main(argv: list[str]) -> int:
    with trace_service(argv) as http:
        print(http.server_address[1], flush=True)
        with suppress(KeyboardInterrupt):
            http.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
