"""Op refs: each call's ``op_name`` a ref to an op object, made as Weave's OTel ingestion does.

Weave's UI links a call to its op, lists it in the Op filter and shows its Code tab only when
``op_name`` is ``weave:///{entity}/{project}/op/{name}:{digest}`` naming an op that exists
(WEAVE_WIRE §7). Per batch, on the export worker, :class:`OpRefs` gives every call the ref of
the op named after its span: an op already in the project is reused (``POST /objs/query``),
a missing one is created with Weave's placeholder source (``POST /files/create``, once per
project per process, then ``POST /obj/create``). Refs are cached for the life of the process,
so the cost is a few requests per distinct span name, not per span.

An op never costs a call: whatever goes wrong (no answer, a refusal, a name/type collision, an
answer that is not what the service sends), the calls keep their plain name, are sent all the
same and counted (``ops_fallback``). A failure is remembered for a while, so an outage of the
op routes costs one try per minute, not a request per batch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeGuard

from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._retry import RETRY_ID_HEADER
from opentelemetry.exporter.weave._stats import CounterName
from opentelemetry.exporter.weave._transport import PostResult

__all__ = [
    "FILES_CREATE_ROUTE",
    "OBJS_QUERY_ROUTE",
    "OBJ_CREATE_ROUTE",
    "OP_SOURCE_FILE_NAME",
    "PLACEHOLDER_FILE_DIGEST",
    "PLACEHOLDER_OP_DIGEST",
    "PLACEHOLDER_OP_SOURCE",
    "OpRefs",
    "bytes_digest",
    "is_digest",
    "object_digest",
    "op_ref",
    "op_val",
    "safe_op_name",
]

logger = logging.getLogger(__package__)

# Weave's SDK uploads files to the plural route (weave 0.52.42 and 0.53.0 alike).
FILES_CREATE_ROUTE = "/files/create"
OBJ_CREATE_ROUTE = "/obj/create"
OBJS_QUERY_ROUTE = "/objs/query"

OP_SOURCE_FILE_NAME = "obj.py"
PLACEHOLDER_OP_SOURCE = (
    "def func(*args, **kwargs):\n    ... # Code-capture unavailable for this op\n"
)
"""The source Weave's OTel ingestion gives every op it makes for a span name."""

OP_NAME_MAX_CHARS = 128
"""The service refuses longer object ids."""

_UNSAFE_NAME_CHARACTERS = re.compile(r"[^\w._-]")
# A digest is url-safe base64 with "-" and "_" replaced: letters and digits only.
_DIGEST = re.compile(r"[A-Za-z0-9]{1,128}")
_FAILURE_MEMORY_SECONDS = 60.0
# Op requests get a slice of the batch's time, never all of it: the calls come first.
_OPS_MAX_SECONDS = 5.0
_OPS_SHARE_OF_DEADLINE = 0.25
# Names per /objs/query: the answer (read up to 64 KiB) must hold them all.
_QUERY_MAX_NAMES = 50
# Plain names whose ref known_ref gives; past this many (names made of ids), it starts
# over: a name not among them is named at delivery, as the first calls of every name are.
_NAMED_MAX = 4096


def bytes_digest(data: bytes) -> str:
    """Weave's digest of bytes: sha256, url-safe base64 with ``-``→``X``, ``_``→``Y``, no ``=``."""
    encoded = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode("ascii")
    return encoded.replace("-", "X").replace("_", "Y").rstrip("=")


def object_digest(val: Any) -> str:
    """Weave's digest of an object's value: that of its JSON with sorted keys."""
    return bytes_digest(json.dumps(val, sort_keys=True).encode())


def op_val(file_digest: str) -> dict[str, Any]:
    """The value of a placeholder op object whose source file has ``file_digest``."""
    return {
        "_type": "CustomWeaveType",
        "weave_type": {"type": "Op"},
        "files": {OP_SOURCE_FILE_NAME: file_digest},
    }


PLACEHOLDER_FILE_DIGEST = bytes_digest(PLACEHOLDER_OP_SOURCE.encode())
PLACEHOLDER_OP_DIGEST = object_digest(op_val(PLACEHOLDER_FILE_DIGEST))
"""The same in every project: the op's value holds nothing but the file's digest."""


def safe_op_name(span_name: str) -> str:
    """The op name Weave's ingestion makes of a span name (``make_safe_name``), cut to 128.

    Spaces and ``/`` become ``_``, characters outside ``[\\w._-]`` are dropped, the rest is
    lowercased. Like Weave's, the result may be empty (a name of emoji only): no op can be
    named that, and such a call keeps its plain name.
    """
    name = _UNSAFE_NAME_CHARACTERS.sub("", span_name.replace(" ", "_").replace("/", "_"))
    # Weave's stops at lower(); but a few letters lowercase to a letter and a combining mark
    # ("İ" to "i̇"), which the service's object id check refuses: dropped too. Cut last.
    return _UNSAFE_NAME_CHARACTERS.sub("", name.lower())[:OP_NAME_MAX_CHARS]


def op_ref(project_id: str, name: str, digest: str) -> str:
    """``weave:///{entity}/{project}/op/{name}:{digest}``."""
    return f"weave:///{project_id}/op/{name}:{digest}"


def is_digest(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


class AnswerPoster(Protocol):
    def post_for_answer(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        """One POST whose answer's JSON body is read, given up after ``timeout`` seconds."""
        ...


class _OpRequestError(Exception):
    """An op request that did not give the answer it must: the names it was for stay plain."""

    def __init__(self, reason: str, *, tried: bool = True) -> None:
        super().__init__(reason)
        self.tried = tried
        """False when no request went out (no time was left): not a failure to remember."""


class OpRefs:
    """Gives each call of a batch its op ref; thread-safe, never raises, never delays a call
    past a slice of its batch's deadline."""

    def __init__(
        self,
        poster: AnswerPoster,
        monotonic: Callable[[], float],
        count: Callable[[CounterName, int], None],
    ) -> None:
        self._poster = poster
        self._monotonic = monotonic
        self._count = count
        # One lock around resolution: two batches naming the same new op must not both
        # create it; the second waits for the first's answer and finds it cached.
        self._lock = threading.Lock()
        self._refs: dict[tuple[str, str], str] = {}
        self._files: dict[str, str] = {}
        # When a name (or a whole project, after its routes failed) may be tried again.
        self._failed_names: dict[tuple[str, str], float] = {}
        self._failed_projects: dict[str, float] = {}
        # What known_ref reads without the lock (a dict's get is atomic under the GIL):
        # the ref given to each (project id, plain op name) at delivery; and every ref made.
        self._named: dict[tuple[str, str], str] = {}
        self._made: set[str] = set()

    def after_fork(self) -> None:
        """A lock held by another thread at the fork would never be released in the child."""
        self._lock = threading.Lock()

    def known_ref(self, project_id: str, op_name: str) -> str | None:
        """The ref :meth:`apply` gave ``op_name``'s calls before, if it did; no request.

        The pipeline maps each call named by it (``span_to_call``'s ``op_ref``): a call is
        then made and encoded once, and only the first calls of a name wait for :meth:`apply`
        at delivery to be named.
        """
        return self._named.get((project_id, op_name))

    def apply(self, calls: Sequence[WeaveCall], deadline: float) -> list[WeaveCall]:
        """``calls`` with op refs where they could be had; plain names, counted, elsewhere.

        A call named already (by :meth:`known_ref`'s ref) is passed on as it is.
        """
        made = self._made
        unnamed = [call for call in calls if call.op_name not in made]
        if not unnamed:
            return list(calls)
        try:
            refs = self._refs_for(unnamed, deadline)
        except Exception:  # a bug of ours must cost the refs, never the calls
            logger.exception("Weave op refs failed; the calls are sent with their plain names")
            refs = {}
        named: list[WeaveCall] = []
        plain = 0
        for call in calls:
            if call.op_name in made:
                named.append(call)
                continue
            ref = refs.get((call.project_id, call.op_name))
            if ref is None:
                plain += 1
                named.append(call)
                continue
            named.append(_named(call, ref))
        if plain:
            self._count("ops_fallback", plain)
        if len(self._named) + len(refs) > _NAMED_MAX:
            self._named = {}  # a name of a call seen again is then named at delivery again
        self._named.update(refs)
        return named

    def _refs_for(self, calls: Sequence[WeaveCall], deadline: float) -> dict[tuple[str, str], str]:
        """The ref of each ``(project_id, plain op_name)`` of ``calls`` that has one."""
        safe_names: dict[tuple[str, str], str] = {}
        for call in calls:
            key = (call.project_id, call.op_name)
            if key not in safe_names:
                safe_names[key] = safe_op_name(call.op_name)
        with self._lock:
            now = self._monotonic()
            budget_end = min(
                deadline, now + min(_OPS_MAX_SECONDS, (deadline - now) * _OPS_SHARE_OF_DEADLINE)
            )
            wanted: dict[str, set[str]] = {}
            for (project_id, _), name in safe_names.items():
                if name and (project_id, name) not in self._refs:
                    wanted.setdefault(project_id, set()).add(name)
            for project_id, names in wanted.items():
                self._resolve(project_id, names, budget_end)
            return {
                key: ref
                for key, name in safe_names.items()
                if (ref := self._refs.get((key[0], name))) is not None
            }

    def _resolve(self, project_id: str, names: set[str], budget_end: float) -> None:
        now = self._monotonic()
        if self._failed_projects.get(project_id, now) > now:
            return
        names = {n for n in names if self._failed_names.get((project_id, n), now) <= now}
        try:
            missing = self._find(project_id, sorted(names), budget_end)
            file_digest = self._placeholder_file(project_id, budget_end) if missing else ""
        except _OpRequestError as failure:
            if not failure.tried:
                return  # out of time before a request: nothing learnt, nothing to remember
            self._failed_projects[project_id] = self._monotonic() + _FAILURE_MEMORY_SECONDS
            logger.warning(
                "Weave op refs for %s unavailable (%s): calls are sent with their plain names; "
                "trying again in %d s",
                project_id,
                failure,
                _FAILURE_MEMORY_SECONDS,
            )
            return
        for name in missing:
            try:
                digest = self._create(project_id, name, file_digest, budget_end)
            except _OpRequestError as failure:
                if not failure.tried:
                    return
                self._failed_names[(project_id, name)] = self._monotonic() + _FAILURE_MEMORY_SECONDS
                logger.warning(
                    "Weave op %r not created in %s (%s): its calls are sent with their plain name",
                    name,
                    project_id,
                    failure,
                )
                continue
            self._learn(project_id, name, digest)
            self._count("ops_created", 1)

    def _learn(self, project_id: str, name: str, digest: str) -> None:
        ref = self._refs[(project_id, name)] = op_ref(project_id, name, digest)
        self._made.add(ref)

    def _find(self, project_id: str, names: list[str], budget_end: float) -> list[str]:
        """Cache the refs of the ``names`` whose op exists; the names that have none."""
        missing: list[str] = []
        for start in range(0, len(names), _QUERY_MAX_NAMES):
            chunk = names[start : start + _QUERY_MAX_NAMES]
            body = {
                "project_id": project_id,
                "filter": {"object_ids": chunk, "is_op": True, "latest_only": True},
                "limit": len(chunk),
                "metadata_only": True,
            }
            answer = self._post(OBJS_QUERY_ROUTE, _json(body), "application/json", budget_end)
            found = _found_ops(answer, set(chunk))
            for name, digest in found.items():
                self._learn(project_id, name, digest)
            self._count("ops_found", len(found))
            missing.extend(name for name in chunk if name not in found)
        return missing

    def _placeholder_file(self, project_id: str, budget_end: float) -> str:
        if (known := self._files.get(project_id)) is not None:
            return known
        boundary = uuid.uuid4().hex
        body = _multipart(
            boundary,
            {"project_id": project_id},
            ("file", OP_SOURCE_FILE_NAME, PLACEHOLDER_OP_SOURCE.encode()),
        )
        answer = self._post(
            FILES_CREATE_ROUTE, body, f"multipart/form-data; boundary={boundary}", budget_end
        )
        digest = _digest_of(answer)
        self._files[project_id] = digest
        return digest

    def _create(self, project_id: str, name: str, file_digest: str, budget_end: float) -> str:
        body = {"obj": {"project_id": project_id, "object_id": name, "val": op_val(file_digest)}}
        answer = self._post(OBJ_CREATE_ROUTE, _json(body), "application/json", budget_end)
        return _digest_of(answer)

    def _post(self, route: str, body: bytes, content_type: str, budget_end: float) -> Any:
        """The JSON answer of a success; ``_OpRequestError`` otherwise. Retried once at most."""
        headers = {"Content-Type": content_type}
        result = PostResult(None, "no time left for op requests", attempts=0)
        for attempt in range(2):
            remaining = budget_end - self._monotonic()
            if remaining <= 0:
                break
            result = self._poster.post_for_answer(route, body, remaining, headers)
            if result.ok or not result.retryable:
                break
            if attempt == 0:  # the same id on the retry lets the service drop a duplicate
                headers = {**headers, RETRY_ID_HEADER: uuid.uuid4().hex}
        if result.attempts == 0:
            raise _OpRequestError(f"{route}: {result.reason}", tried=False)
        if not result.ok:
            answer = "no answer" if result.status_code is None else f"HTTP {result.status_code}"
            raise _OpRequestError(f"{route}: {answer}: {result.reason}".rstrip(": "))
        return result.body


def _named(call: WeaveCall, ref: str) -> WeaveCall:
    """``call`` under its op's ref, its plain name kept as the name shown."""
    start = call.start
    return call.renamed(ref, start.display_name or start.op_name)


def _json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _digest_of(answer: Any) -> str:
    digest = answer.get("digest") if isinstance(answer, dict) else None
    if not is_digest(digest):
        raise _OpRequestError("the answer holds no digest")
    return digest


def _found_ops(answer: Any, asked: set[str]) -> dict[str, str]:
    """The digest of each asked name's latest op in an ``/objs/query`` answer.

    Anything else in it is passed over: objects not asked for, not ops (a name held by an
    object of another type cannot be an op, and creating it will be refused), bad digests.
    """
    objs = answer.get("objs") if isinstance(answer, dict) else None
    if not isinstance(objs, list):
        raise _OpRequestError("the answer is not a list of objects")
    found: dict[str, str] = {}
    for obj in _dicts(objs):
        name, digest = obj.get("object_id"), obj.get("digest")
        if name not in asked or obj.get("kind", "op") != "op" or not is_digest(digest):
            continue
        if name not in found or obj.get("is_latest"):
            found[name] = digest
    return found


def _dicts(items: Iterable[Any]) -> Iterable[dict[str, Any]]:
    return (item for item in items if isinstance(item, dict))


def _multipart(boundary: str, fields: Mapping[str, str], file: tuple[str, str, bytes]) -> bytes:
    """A ``multipart/form-data`` body of text ``fields`` and one ``file`` (field, name, bytes)."""
    parts: list[bytes] = []
    for field_name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    field_name, file_name, content = file
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="{file_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()
