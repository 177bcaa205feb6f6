"""The wire models against the contract (the given OpenAPI, the schemas written from the wire
notes), and the contract check against bad bodies. The encoders against the models: test_call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from opentelemetry.exporter.weave._models import (
    CallEndReq,
    CompletedCallSchemaForInsert,
    EndedCallSchemaForInsert,
    LLMUsageSchema,
    StartedCallSchemaForInsert,
    SummaryInsertMap,
    TraceStatus,
)

from .helpers import CONTRACT_DIR, ROUTE_VALIDATORS

OPENAPI = json.loads((CONTRACT_DIR / "call_end.schema.json").read_text())["components"]["schemas"]
START_SCHEMA = json.loads((CONTRACT_DIR / "call_start.schema.json").read_text())
COMPLETE_SCHEMA = json.loads((CONTRACT_DIR / "calls_complete.schema.json").read_text())

VALID_END = {
    "end": {
        "project_id": "e/p",
        "id": "0123456789abcdef",
        "ended_at": "2026-01-02T03:04:05.678901+00:00",
        "summary": {"usage": {"m": {"input_tokens": 1}}, "status_counts": {"success": 1}},
    }
}


OUR_EXTRA_FIELDS = {"EndedCallSchemaForInsert": {"trace_id"}}
"""Fields we send beyond the given OpenAPI's, where it allows extra keys (WEAVE_WIRE §7: newer
servers read an end's ``trace_id``, older ones ignore it)."""


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (CallEndReq, "CallEndReq"),
        (EndedCallSchemaForInsert, "EndedCallSchemaForInsert"),
        (SummaryInsertMap, "SummaryInsertMap"),
        (LLMUsageSchema, "LLMUsageSchema"),
    ],
)
def test_models_have_the_openapi_fields(model: type[BaseModel], name: str) -> None:
    ours = model.model_json_schema(mode="validation")
    theirs = OPENAPI[name]
    forbids_extra = theirs.get("additionalProperties") is False
    extras = OUR_EXTRA_FIELDS.get(name, set())
    assert not (extras and forbids_extra), f"{name} refuses keys it does not list"
    assert set(ours["properties"]) == set(theirs["properties"]) | extras
    assert not extras & set(ours.get("required", []))  # an older server never needs them
    assert set(ours.get("required", [])) == set(theirs.get("required", []))
    assert (model.model_config.get("extra") == "forbid") is forbids_extra


@pytest.mark.parametrize(
    ("model", "schema"),
    [
        (StartedCallSchemaForInsert, START_SCHEMA["properties"]["start"]),
        (CompletedCallSchemaForInsert, COMPLETE_SCHEMA["properties"]["batch"]["items"]),
    ],
    ids=["call_start", "calls_complete"],
)
def test_models_have_the_written_contract_fields(
    model: type[BaseModel], schema: dict[str, Any]
) -> None:
    ours = model.model_json_schema(mode="validation")
    assert set(ours["properties"]) == set(schema["properties"])
    assert set(ours.get("required", [])) == set(schema.get("required", []))


def test_trace_status_values() -> None:
    assert {status.value for status in TraceStatus} == set(OPENAPI["TraceStatus"]["enum"])


def test_request_wrapper_refuses_unknown_keys_like_the_service() -> None:
    with pytest.raises(ValidationError):
        CallEndReq.model_validate({**VALID_END, "extra": 1})
    CallEndReq.model_validate(VALID_END)


def test_valid_body_passes_the_schema() -> None:
    assert list(ROUTE_VALIDATORS["/call/end"].iter_errors(VALID_END)) == []


def test_an_end_with_its_trace_id_and_started_at_passes_the_schema() -> None:
    end = {
        **VALID_END["end"],
        "trace_id": "0" * 31 + "1",
        "started_at": VALID_END["end"]["ended_at"],
    }

    assert list(ROUTE_VALIDATORS["/call/end"].iter_errors({"end": end})) == []
    # The contract check still reads the end: a bad field beside trace_id is caught.
    assert list(ROUTE_VALIDATORS["/call/end"].iter_errors({"end": {**end, "ended_at": "x"}}))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda end: end.pop("summary"), id="missing-summary"),
        pytest.param(lambda end: end.update(ended_at="yesterday"), id="bad-date-time"),
        pytest.param(lambda end: end.update(exception={"type": "x"}), id="exception-not-string"),
        pytest.param(
            lambda end: end["summary"].update(status_counts={"done": 1}), id="bad-trace-status"
        ),
        pytest.param(
            lambda end: end["summary"]["usage"]["m"].update(input_tokens="1"), id="token-as-string"
        ),
    ],
)
def test_contract_check_catches_bad_bodies(mutate: Any) -> None:
    body = json.loads(json.dumps(VALID_END))
    mutate(body["end"])
    assert list(ROUTE_VALIDATORS["/call/end"].iter_errors(body)) != []
