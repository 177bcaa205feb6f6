"""The README's generated blocks, rendered from the code they describe.

A block sits in README.md between ``<!-- generated:NAME -->`` and ``<!-- end:NAME -->``, each
on a line of its own; the body is indented like the opening marker, so a block can sit inside
a list item. Every name in :data:`BLOCKS` must have its block in the README, and every block
its function. ``tests/test_readme.py`` fails when one drifts; to rewrite them::

    python -m opentelemetry.exporter.weave._docs [README.md] [--check]

To add a block: write a function returning its Markdown, add it to :data:`BLOCKS`, and put
the two markers in the README where it goes.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from opentelemetry.exporter.weave._config import SETTINGS, Setting
from opentelemetry.exporter.weave._conventions import CONVENTIONS, Convention
from opentelemetry.exporter.weave._redaction import DEFAULT_SECRET_KEYS
from opentelemetry.exporter.weave._stats import LOSS_COUNTERS, ExportStats

__all__ = ["BLOCKS", "CONVENTION_ROWS", "REGENERATE", "generated_blocks", "main", "render"]

REGENERATE = "python -m opentelemetry.exporter.weave._docs"

_MIB = 1024 * 1024
# README prose is wrapped to this width; tables are not (Markdown cannot wrap a row).
_WIDTH = 96


def config_table() -> str:
    """The Configuration table: one row per setting, in the order they are resolved."""
    rows = [
        "| Environment variable | Keyword argument | Default | Meaning |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS:
        variable = f"`{setting.env}`" if setting.env else "—"
        default = _default_text(setting)
        rows.append(f"| {variable} | `{setting.keyword}` | {default} | {_meaning(setting)} |")
    return "\n".join(rows)


def _meaning(setting: Setting) -> str:
    if setting.bounds is None:
        return setting.doc
    return f"{setting.doc} {str(setting.bounds).capitalize()}."


def _default_text(setting: Setting) -> str:
    value = setting.default
    if setting.required:
        return "— (required)"
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if setting.keyword.endswith("_bytes") and isinstance(value, int) and value % _MIB == 0:
        return f"`{value}` ({value // _MIB} MiB)"
    return f"`{value}`"


class _Row(NamedTuple):
    label: str
    fields: tuple[str, ...]
    """Convention fields listed together, in this order."""


# Convention fields in the order the README lists them, with their labels. The run id and
# steps always go together, so they share a row.
CONVENTION_ROWS = (
    _Row("LLM messages (inputs)", ("llm_inputs",)),
    _Row("LLM messages (output)", ("llm_outputs",)),
    _Row("inputs", ("inputs",)),
    _Row("system instructions", ("system_instructions",)),
    _Row("request parameters", ("request_parameters",)),
    _Row("output", ("outputs",)),
    _Row("model (usage key)", ("model",)),
    _Row("model asked for", ("request_model",)),
    _Row("response id", ("response_id",)),
    _Row("finish reasons", ("finish_reasons",)),
    _Row("provider", ("provider",)),
    _Row("span kind", ("span_kind",)),
    _Row("agent name", ("agent_name",)),
    _Row("tool name", ("tool_name",)),
    _Row("display name", ("display_name",)),
    _Row("thread", ("thread_id",)),
    _Row("turn marker", ("is_turn",)),
    _Row("run", ("wb_run_id", "wb_run_step", "wb_run_step_end")),
    _Row("input tokens", ("input_tokens",)),
    _Row("output tokens", ("output_tokens",)),
    _Row("total tokens", ("total_tokens",)),
    _Row("cache read tokens", ("cache_read_input_tokens",)),
    _Row("cache creation tokens", ("cache_creation_input_tokens",)),
    _Row("reasoning tokens", ("reasoning_tokens",)),
)

_KEY_NOTES = {"gen_ai.system": "deprecated"}


class _Family(NamedTuple):
    title: str
    remark: str = ""
    """Shown after the title, in parentheses."""
    note: str = ""
    """A paragraph after the family's table."""


# Convention.name is an identifier, not a heading; a family missing here is titled by it.
_FAMILIES = {
    "weave": _Family("Weave / W&B"),
    "OpenTelemetry GenAI": _Family(
        "OpenTelemetry GenAI",
        "current names first, then older or alternative spellings",
        "The deprecated `gen_ai.prompt`, `gen_ai.completion` and `gen_ai.usage.prompt_tokens` /\n"
        "`completion_tokens` are read as part of OpenLLMetry, which still sends them.",
    ),
    "OpenLLMetry / Traceloop": _Family(
        "OpenLLMetry / Traceloop", "model and provider come from its `gen_ai.*` keys above"
    ),
    "OpenInference": _Family("OpenInference", "Arize"),
    "MLflow, Pydantic AI, Google ADK, Anthropic SDK": _Family(
        "Other frameworks", "MLflow, Pydantic AI, Google ADK, the Anthropic SDK's own tracing"
    ),
    "generic": _Family("Generic"),
}


def conventions_tables() -> str:
    """One table per convention family, in precedence order: which keys feed which field."""
    return "\n\n".join(_convention_table(convention) for convention in CONVENTIONS)


def _convention_table(convention: Convention) -> str:
    family = _FAMILIES.get(convention.name, _Family(convention.name))
    heading = f"**{family.title}**" + (f" ({family.remark})" if family.remark else "")
    parts = [heading, "| Field | Keys |\n|---|---|"]
    for row in CONVENTION_ROWS:
        keys = [key for name in row.fields for key in getattr(convention, name)]
        if keys:
            parts[-1] += f"\n| {row.label} | {', '.join(map(_key_text, keys))} |"
    if family.note:
        parts.append(family.note)
    return "\n\n".join(parts)


def _key_text(key: str) -> str:
    note = _KEY_NOTES.get(key)
    return f"`{key}` ({note})" if note else f"`{key}`"


def secret_keys() -> str:
    """The default secret key patterns, as the regular expressions they are."""
    return _wrap(f"`{pattern}`" for pattern in DEFAULT_SECRET_KEYS)


def _wrap(items: Iterable[str]) -> str:
    """Items separated by commas, broken between items only (never inside a code span)."""
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + len(item) + 2 > _WIDTH:
            lines[-1] += ","
            lines.append(item)
        else:
            lines[-1] += f", {item}" if lines[-1] else item
    return "\n".join(lines)


def counters_table() -> str:
    """``stats()``'s counters with their docstrings, and what ``on_drop`` reports them as."""
    reasons = {counter: reason.value for reason, counter in LOSS_COUNTERS.items()}
    rows = ["| Counter | What it counts | `on_drop` reason |", "|---|---|---|"]
    for name, doc in _attribute_docs(ExportStats).items():
        reason = f"`{reasons[name]}`" if name in reasons else ""
        rows.append(f"| `{name}` | {doc} | {reason} |")
    calls_failed = _markdown(inspect.getdoc(ExportStats.calls_failed) or "")
    rows.append(f"| `calls_failed` | {calls_failed} | |")
    return "\n".join(rows)


def gateway_config_table() -> str:
    """The gateway's own settings (README "Gateway"); needs the ``[gateway]`` extra."""
    from opentelemetry.exporter.weave.gateway._settings import GATEWAY_SETTINGS

    rows = ["| Environment variable | Default | Meaning |", "|---|---|---|"]
    for setting in GATEWAY_SETTINGS:
        rows.append(f"| `{setting.env}` | {_default_text(setting)} | {_meaning(setting)} |")
    return "\n".join(rows)


def gateway_counters_table() -> str:
    """The gateway's counters and levels, as ``/stats`` and ``/metrics`` show them."""
    from opentelemetry.exporter.weave.gateway._gateway import GAUGES, GatewayStats

    rows = ["| Counter | Metric | What it counts |", "|---|---|---|"]
    for name, doc in _attribute_docs(GatewayStats).items():
        metric = f"weave_gateway_{name}" + ("" if name in GAUGES else "_total")
        rows.append(f"| `{name}` | `{metric}` | {doc} |")
    return "\n".join(rows)


def _markdown(docstring: str) -> str:
    """A docstring as one Markdown line: reST's double backquotes become code spans."""
    return " ".join(docstring.split()).replace("``", "`")


def _attribute_docs(cls: type) -> dict[str, str]:
    """Each annotated attribute of ``cls`` with the docstring under it, in source order."""
    (node,) = ast.parse(inspect.getsource(cls)).body
    assert isinstance(node, ast.ClassDef)
    docs: dict[str, str] = {}
    for statement, following in zip(node.body, [*node.body[1:], None], strict=True):
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            docstring = (
                following.value.value
                if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                else ""
            )
            docs[statement.target.id] = _markdown(str(docstring))
    return docs


BLOCKS: dict[str, Callable[[], str]] = {
    "config": config_table,
    "conventions": conventions_tables,
    "secret-keys": secret_keys,
    "counters": counters_table,
    "gateway-config": gateway_config_table,
    "gateway-counters": gateway_counters_table,
}
"""Every generated block of the README, by marker name."""

_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)<!-- generated:(?P<name>[\w-]+) -->\n"
    r"(?P<body>.*?)"
    r"^(?P=indent)<!-- end:(?P=name) -->$",
    re.DOTALL | re.MULTILINE,
)


def generated_blocks(readme: str) -> dict[str, str]:
    """The body of each generated block in README text, by name, without its indentation."""
    return {match["name"]: _body(match) for match in _BLOCK.finditer(readme)}


def _body(match: re.Match[str]) -> str:
    indent = match["indent"]
    lines = match["body"].removesuffix("\n").split("\n")
    return "\n".join(line.removeprefix(indent) for line in lines)


def render(readme: str) -> str:
    """README text with every generated block rewritten from the code.

    Raises ValueError for a block with no function, or a function with no block.
    """
    found = generated_blocks(readme)
    if unknown := sorted(found.keys() - BLOCKS.keys()):
        raise ValueError(f"README blocks with no generator in BLOCKS: {', '.join(unknown)}")
    if missing := sorted(BLOCKS.keys() - found.keys()):
        raise ValueError(f"README has no markers for blocks: {', '.join(missing)}")

    def rewrite(match: re.Match[str]) -> str:
        indent, name = match["indent"], match["name"]
        body = "\n".join(f"{indent}{line}" if line else line for line in BLOCKS[name]().split("\n"))
        return f"{indent}<!-- generated:{name} -->\n{body}\n{indent}<!-- end:{name} -->"

    return _BLOCK.sub(rewrite, readme)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REGENERATE, description="Rewrite the README's generated blocks from the code."
    )
    parser.add_argument("readme", nargs="?", type=Path, default=Path("README.md"))
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a block is out of date"
    )
    args = parser.parse_args(argv)
    readme: Path = args.readme
    current = readme.read_text(encoding="utf-8")
    try:
        updated = render(current)
    except ValueError as exc:
        print(f"{readme}: {exc}", file=sys.stderr)
        return 2
    if updated == current:
        return 0
    if args.check:
        old, new = generated_blocks(current), generated_blocks(updated)
        drifted = ", ".join(name for name in BLOCKS if old[name] != new[name])
        print(f"{readme}: out of date: {drifted}; run {REGENERATE}", file=sys.stderr)
        return 1
    readme.write_text(updated, encoding="utf-8")
    print(f"{readme}: rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
