"""The README and docs/ say what is true: their links lead somewhere, their examples load, the
commands they name exist, and every config key and event kind is documented."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import typing
from pathlib import Path

import pytest

from agentpi.agent.script import load_script
from agentpi.cli.main import build_parser
from agentpi.config.document import Config, load_config
from agentpi.events import EVENT_KINDS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 285
"""The front door: what it is, what you need, the quick start, the way to a boot service, the
common configurations and where to go next; everything else lives in docs/."""


def text_of(page: Path) -> str:
    return page.read_text()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(page: Path) -> list[str]:
    found, in_code = [], False
    for line in text_of(page).splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.append(line.lstrip("#").strip())
    return found


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text_of(page), re.S | re.M)


def test_the_readme_is_a_front_door_with_contents() -> None:
    lines = text_of(README).splitlines()
    assert len(lines) <= MAX_README_LINES
    sections = [h for h in headings(README)[1:] if h != "Contents"]
    contents = re.findall(r"^- \[(.+?)\]\(#(.+?)\)$", text_of(README), re.M)
    assert [title for title, _ in contents] == sections
    assert all(anchor == slug(title) for title, anchor in contents)
    linked = set(re.findall(r"\]\((docs/[\w-]+\.md)\)", text_of(README)))
    assert linked == {f"docs/{page.name}" for page in DOCS}, "every page of docs/ is linked"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_somewhere(page: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text_of(page)):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (
            anchor and file.suffix == ".md" and anchor not in map(slug, headings(file))
        ):
            broken.append(target)
    assert broken == []


def test_the_quick_start_is_two_make_targets_and_ci_runs_the_test_one() -> None:
    quick = text_of(README).split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^    (make \w+)", quick, re.M)
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test" in ci


def example_configs() -> list[tuple[str, str]]:
    return [
        (f"{page.name}#{n}", block)
        for page in PAGES
        for n, block in enumerate(blocks(page, "toml"))
        if "[simulator]" not in block
    ]


@pytest.mark.parametrize(("where", "body"), example_configs(), ids=lambda v: str(v)[:24])
def test_every_example_config_loads(tmp_path: Path, where: str, body: str) -> None:
    assert "[agent]" in body, f"{where}: an example is a whole config, with its [agent]"
    path = tmp_path / "config.toml"
    path.write_text(body)
    config = load_config(path)
    assert config.agent.agent_id


def test_the_example_simulator_script_loads(tmp_path: Path) -> None:
    [script] = [b for b in blocks(ROOT / "docs" / "simulator.md", "toml") if "[simulator]" in b]
    path = tmp_path / "script.toml"
    path.write_text(script)
    loaded = load_script(path)
    assert loaded.turns[0].tool_call is not None


def subcommands() -> set[str]:
    """The commands as ``agentpi --help`` lists them: ``{run,simulate,...}``."""
    listed = re.search(r"\{([a-z,-]+)\}", build_parser().format_usage())
    assert listed is not None
    return set(listed.group(1).split(","))


def test_every_command_the_docs_name_exists() -> None:
    known = subcommands()
    named: set[str] = set()
    for page in PAGES:
        text = text_of(page)
        code = re.findall(r"`([^`\n]+)`", text) + re.findall(r"^    .*$", text, re.M)
        for snippet in code:
            named |= set(re.findall(r"\bagentpi ([a-z][a-z-]+)", snippet))
    assert named and named - known == set()


def config_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        kind = hints[item.name]
        if dataclasses.is_dataclass(kind):
            keys += config_keys(kind, f"{prefix}{item.name}.")  # type: ignore[arg-type]
        else:
            keys.append(prefix + item.name)
    return keys


def documented(key: str, docs: str) -> bool:
    """As ``key =`` in an example (commented out or not), as a table of its own
    (``[section.key]``, ``[section.key.name]``), or as `section.key` in the text."""
    name = key.rsplit(".", 1)[1]
    return bool(
        re.search(rf"^(# *)?{name} = ", docs, re.M)
        or f"[{key}." in docs
        or f"[{key}]" in docs
        or f"`{key}`" in docs
    )


def test_every_config_key_is_documented() -> None:
    docs = "\n".join(text_of(page) for page in PAGES)
    assert [key for key in config_keys(Config) if not documented(key, docs)] == []


def test_every_event_kind_is_in_the_event_table() -> None:
    table = text_of(ROOT / "docs" / "control.md").split("## Event lines", 1)[1]
    missing = [kind for kind in EVENT_KINDS if f"`{kind}`" not in table]
    assert missing == []


def test_the_docs_name_no_file_that_is_not_there() -> None:
    named = set()
    for page in PAGES:
        paths = re.findall(
            r"`((?:device/agentpi|tests|benchmarks|tools)/[\w/.-]+\.py)`", text_of(page)
        )
        named |= set(paths)
    tracked = set(
        subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    )
    assert named and sorted(named - tracked) == []


def test_every_server_event_is_in_the_readme_table() -> None:
    from agentpi.protocol.messages import SERVER_EVENT_TYPES

    table = text_of(README).split("## What the device does with each server event", 1)[1]
    table = table.split("\n## ", 1)[0]
    missing = [
        kind for kind in [*SERVER_EVENT_TYPES, "contextual_update"] if f"`{kind}`" not in table
    ]
    assert missing == []


def test_every_failure_row_is_in_the_failure_table() -> None:
    from agentpi.protocol.failures import BY_CLOSE_CODE, BY_CONNECT, BY_ERROR_TYPE, DEVICE

    text = text_of(ROOT / "docs" / "configuration.md").split("## When a conversation fails", 1)[1]
    text = text.split("\n## ", 1)[0]
    rows = [*BY_ERROR_TYPE.values(), *BY_CLOSE_CODE.values(), *BY_CONNECT.values(), DEVICE]
    assert [row.name for row in rows if f"| `{row.name}` |" not in text] == []
    assert [kind for kind in BY_ERROR_TYPE if f"`{kind}`" not in text] == []
