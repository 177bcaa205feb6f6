"""The names the package exports: a change to the public API is a deliberate edit here."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import opentelemetry.exporter.weave as weave

PUBLIC_NAMES = [
    "AuthScheme",
    "ConfigError",
    "ExportStats",
    "SpanSet",
    "WeaveCall",
    "WeaveLogExporter",
    "WeaveLogRecordProcessor",
    "WeaveOptions",
    "WeaveSettings",
    "WeaveSpanExporter",
    "WeaveSpanProcessor",
    "WriteMode",
    "__version__",
    "install",
    "span_to_call",
]


def test_public_names_are_pinned() -> None:
    assert weave.__all__ == PUBLIC_NAMES


def test_every_public_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec(f"from {weave.__name__} import *", namespace)
    assert sorted(name for name in namespace if name != "__builtins__") == PUBLIC_NAMES


def _package_modules(package: ModuleType) -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    )


PRIVATE_MODULES = [
    name
    for name in _package_modules(weave)
    if name.rpartition(".")[2].startswith("_") and not name.endswith(".__main__")  # a CLI
]


def test_private_modules_are_found() -> None:
    assert f"{weave.__name__}._pipeline" in PRIVATE_MODULES


@pytest.mark.parametrize("module_name", PRIVATE_MODULES)
def test_each_private_modules_all_names_exist(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
