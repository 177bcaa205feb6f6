"""Entity and project names never take a request outside the server URL's path.

The names are checked to W&B's rules when the settings are made, and every name is one
encoded path segment of the ``calls_complete`` route, so that even a name the checks would
refuse stays under the server URL's path on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opentelemetry.exporter.weave import ConfigError, WeaveSettings
from opentelemetry.exporter.weave._call import calls_complete_body, calls_complete_route
from opentelemetry.exporter.weave._transport import HttpAttempt

from .fault_server import ScriptedServer
from .helpers import API_KEY, make_call, settings_for


@pytest.mark.parametrize(
    "project",
    [
        "../..",
        "team/..",
        "./proj",
        "team/.",
        "team/a/b",
        "/proj",
        "team/",
        "team/ ",
        "te am/proj",
        "team/ proj",
        "team/proj\x00",
        "team/pr\noj",
        "team/pr\u2028oj",
        "team/pr%2Foj",
        "team/pr?oj",
        "team/pr#oj",
        "team/pr\\oj",
        "team/pr:oj",
        "team/" + "p" * 129,
    ],
)
def test_a_name_outside_wandb_rules_is_a_config_error(project: str) -> None:
    with pytest.raises(ConfigError, match=r"^project: must be 'entity/project'"):
        WeaveSettings.from_env({}, api_key=API_KEY, project=project)


@pytest.mark.parametrize(
    "project", ["team/my app", "team/café", "my-team_2/proj.v2", "team/" + "p" * 128]
)
def test_wandb_project_names_are_accepted(project: str) -> None:
    assert WeaveSettings.from_env({}, api_key=API_KEY, project=project).project_id == project


def test_a_project_from_wandb_entity_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="WANDB_PROJECT"):
        WeaveSettings.from_env({"WANDB_API_KEY": "k", "WANDB_ENTITY": "..", "WANDB_PROJECT": "p"})


@pytest.mark.parametrize(
    ("entity", "project", "route"),
    [
        ("..", "..", "/v2/%2E%2E/%2E%2E/calls/complete"),
        (".", "p", "/v2/%2E/p/calls/complete"),
        ("team", "my app/x", "/v2/team/my%20app%2Fx/calls/complete"),
        ("team", "p.v2", "/v2/team/p.v2/calls/complete"),
    ],
)
def test_each_name_is_one_encoded_segment_of_the_route(
    entity: str, project: str, route: str
) -> None:
    assert calls_complete_route(entity, project) == route


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.mark.parametrize(("entity", "project"), [("..", ".."), (".", ".."), ("..", "x")])
def test_the_request_stays_under_the_server_urls_path(
    server: ScriptedServer, entity: str, project: str
) -> None:
    attempt = HttpAttempt(settings_for(f"{server.url}/base/traces"))
    try:
        route = calls_complete_route(entity, project)
        result = attempt.post(route, calls_complete_body([make_call()]), 5.0, {})
    finally:
        attempt.close()
    assert result.ok
    (seen,) = server.seen
    assert seen.path.startswith("/base/traces/v2/"), seen.path
    assert seen.path.endswith("/calls/complete")
