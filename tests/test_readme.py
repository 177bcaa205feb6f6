"""The README's generated blocks match the code they are generated from."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from opentelemetry.exporter.weave._conventions import Convention
from opentelemetry.exporter.weave._docs import (
    BLOCKS,
    CONVENTION_ROWS,
    REGENERATE,
    generated_blocks,
    main,
    render,
)

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def readme_blocks() -> dict[str, str]:
    return generated_blocks(README.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_is_up_to_date(name: str, readme_blocks: dict[str, str]) -> None:
    assert name in readme_blocks, (
        f"README.md has no <!-- generated:{name} --> ... <!-- end:{name} --> markers"
    )
    assert readme_blocks[name] == BLOCKS[name](), (
        f"README.md block {name!r} differs from the code; run: {REGENERATE}"
    )


def test_every_block_has_a_generator(readme_blocks: dict[str, str]) -> None:
    assert set(readme_blocks) <= set(BLOCKS)


def test_convention_rows_cover_every_field() -> None:
    listed = [name for row in CONVENTION_ROWS for name in row.fields]
    documented = [spec.name for spec in fields(Convention)]
    assert sorted(listed) == sorted(set(documented) - {"name", "detect_prefixes"})


def test_indented_block_keeps_its_indentation() -> None:
    text = "- item:\n  <!-- generated:config -->\n  stale\n  <!-- end:config -->\n"
    text += "".join(
        f"<!-- generated:{name} -->\n<!-- end:{name} -->\n" for name in BLOCKS if name != "config"
    )
    rendered = render(text)
    config = rendered.split("<!-- generated:config -->\n", 1)[1].split("  <!-- end:config", 1)[0]
    assert all(line.startswith("  |") for line in config.splitlines())
    assert generated_blocks(rendered)["config"] == BLOCKS["config"]()
    assert render(rendered) == rendered


def test_unknown_or_missing_blocks_are_refused() -> None:
    with pytest.raises(ValueError, match="no generator"):
        render("<!-- generated:nonsense -->\n<!-- end:nonsense -->\n")
    with pytest.raises(ValueError, match="no markers"):
        render("no blocks at all\n")


def test_command_checks_and_rewrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    current = README.read_text(encoding="utf-8")
    stale = current.replace("| `WEAVE_OTEL_SPANS` | `spans` |", "| `WEAVE_OTEL_SPANS` | `spanz` |")
    assert stale != current
    copy = tmp_path / "README.md"
    copy.write_text(stale, encoding="utf-8")

    assert main([str(copy), "--check"]) == 1
    assert "config" in capsys.readouterr().err
    assert copy.read_text(encoding="utf-8") == stale

    assert main([str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == current
    assert main([str(copy), "--check"]) == 0
