"""The owner's command line: every command speaks JSON, and the data directory is selectable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ownstream.cli import output
from ownstream.cli.main import app
from tests.runtime.messages import done, entry, journal_identity


def leaf_commands(command: Any, prefix: tuple[str, ...] = ()) -> list[Any]:
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        found = []
        for name, sub in command.commands.items():
            found += leaf_commands(sub, (*prefix, name))
        return found
    return [(" ".join(prefix), command)]


def test_every_command_has_a_json_option() -> None:
    commands = leaf_commands(typer.main.get_command(app))
    names = {name for name, _ in commands}
    assert {"connectors list", "connectors add", "streams list", "streams add", "rules list",
            "rules add", "connections list", "connections show", "connect", "import", "run",
            "runs list", "records"} <= names
    missing = [name for name, command in commands
               if not any("--json" in p.opts for p in command.params)]
    assert missing == ["mcp"]  # its stdout carries MCP messages only; errors go to stderr


@pytest.fixture
def world(owner: Any) -> dict[str, Any]:
    """A home with notes and journal connections, one of them fed by an API run and an import."""
    owner.add_journal()
    owner.add_connector("shell_notes")
    notes = owner.json("connect", "shell-notes", "--setting", "account=alice")["connection_id"]
    owner.json("run", notes)
    journal = owner.connect_scripted(
        "api", [journal_identity("u1"), entry("e1", text="[draft] hello"), done(1)], identity="u1",
        connector="journal-api",
    )
    owner.json("run", journal)
    path = owner.import_file("export.jsonl", [{"entry_id": "e2", "written_at": "2024-01-02"}],
                             header={"user": "u1"})
    owner.json("import", "journal-export", path)
    return {"owner": owner, "notes": notes, "journal": journal}


def test_each_command_prints_json(world: dict[str, Any], tmp_path: Path) -> None:
    owner, notes, journal = world["owner"], world["notes"], world["journal"]
    connectors = owner.json("connectors", "list")
    by_key = {c["connector_key"]: c for c in connectors}
    assert {"spotify", "spotify-export", "shell-notes", "journal-api", "journal-export"} <= set(
        by_key
    )
    assert by_key["journal-export"]["acquisition_method"] == "owner_artifact"
    assert by_key["journal-api"]["streams"] == [
        {"name": "journal_entries", "version": 1, "shared": True}
    ]
    assert by_key["shell-notes"]["streams"] == [{"name": "notes", "version": 1, "shared": False}]
    assert by_key["shell-notes"]["setup"]["settings"][0] == {
        "name": "account", "env": "NOTES_ACCOUNT", "default": None,
    }

    streams = {s["name"]: s for s in owner.json("streams", "list")}
    assert streams["journal_entries"]["emitted_by"] == ["journal-api", "journal-export"]
    assert streams["notes"]["emitted_by"] == ["shell-notes"]
    assert streams["profile"]["emitted_by"] == ["spotify", "spotify-export"]
    assert streams["journal_entries"]["semantics"] == "mutable_state"
    assert streams["journal_entries"]["primary_key"] == ["entry_id"]

    rules = {r["rule_id"]: r for r in owner.json("rules", "list")}
    assert rules["journal-account"]["paths"] == [
        {"connector_key": "journal-api"}, {"connector_key": "journal-export"},
    ]
    assert "spotify-account" in rules

    listed = owner.json("connections", "list")
    assert sorted(c["connection_id"] for c in listed) == sorted([notes, journal])
    shown = owner.json("connections", "show", journal)
    assert [(p["connector_key"], p["acquisition_method"]) for p in shown["acquisition_paths"]] \
        == [("journal-api", "provider_api"), ("journal-export", "owner_artifact")]
    assert {s["stream"]: s["record_count"] for s in shown["streams"]} == {"journal_entries": 2}
    renamed = owner.json("connections", "rename", journal, "My journal")
    assert renamed["display_name"] == "My journal"
    assert renamed["display_name_is_placeholder"] is False

    runs = owner.json("runs", "list")
    assert {(r["kind"], r["acquisition_method"]) for r in runs} == {
        ("run", "provider_api"), ("run", "owner_artifact"), ("import_batch", "owner_artifact"),
    }
    assert all(r["connection_id"] in (notes, journal) for r in runs)
    assert {r["connection_id"] for r in owner.json("runs", "list", "--connection", notes)} == {
        notes
    }

    page = owner.json("records", notes, "notes", "--limit", "2")
    assert [r["id"] for r in page["data"]] == ["note-3", "note-2"] and page["has_more"] is True
    assert page["data"][0]["data"]["title"] == "note 3 of alice"

    definition = tmp_path / "def.json"
    definition.write_text(json.dumps({
        "name": "bookmarks", "semantics": "append_only", "primary_key": ["url"],
        "schema": {"type": "object", "properties": {"url": {"type": "string"}},
                   "required": ["url"]},
    }))
    assert owner.json("streams", "add", definition)["name"] == "bookmarks"
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps({**json.loads((owner.connectors / "journal_rule.json")
                                             .read_text()), "version": 2}))
    assert owner.json("rules", "add", rule)["version"] == 2


def test_text_output_renders_for_every_command(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, notes, journal = world["owner"], world["notes"], world["journal"]
    monkeypatch.setattr(output.console, "width", 300)  # ids are not folded across lines
    assert "journal-export" in owner.cli("connectors", "list").stdout
    assert "journal_entries" in owner.cli("streams", "list").stdout
    assert "journal-account" in owner.cli("rules", "list").stdout
    assert notes in owner.cli("connections", "list").stdout
    shown = owner.cli("connections", "show", journal).stdout
    assert "journal-api" in shown and "owner_artifact" in shown
    assert "identity: journal_user=u1" in shown
    assert "import_batch" in owner.cli("runs", "list").stdout
    assert "note 1 of alice" in owner.cli("records", notes, "notes").stdout
    assert "[draft] hello" in owner.cli("records", journal, "journal_entries").stdout  # not markup
    ran = owner.cli("run", notes).stdout
    assert ran.startswith("succeeded: run_") and "incremental" in ran
    again = owner.cli("connect", "shell-notes", "--setting", "account=alice").stdout
    assert again.startswith(f"reused {notes}")
    error = owner.cli("records", "cin_missing", "notes", code=1)
    assert "[connection_not_found]" in error.stderr


def test_errors_are_json_with_a_code(owner: Any) -> None:
    error = owner.error("connections", "show", "cin_missing")
    assert error == {"type": "ConnectionNotFound", "code": "connection_not_found",
                     "message": "no connection cin_missing", "param": "connection_id"}
    assert owner.error("runs", "list", "--connection", "cin_missing")["code"] == (
        "connection_not_found"
    )
    assert owner.error("connect", "nope")["code"] == "unknown_connector"
    assert owner.error("records", "cin_missing", "notes")["code"] == "connection_not_found"
    assert owner.error("run")["code"] == "invalid_request"
    bad = owner.scratch / "bad.json"
    bad.write_text("{")
    assert owner.error("streams", "add", bad)["code"] == "invalid_request"
    assert owner.error("rules", "add", bad)["code"] == "invalid_request"
    assert owner.error("connectors", "add", bad)["code"] == "invalid_manifest"
    url_key = json.loads((owner.connectors / "scripted" / "manifest.json").read_text())
    url_key["connector_key"] = "https://example.test/scripted"
    bad.write_text(json.dumps(url_key))
    error = owner.error("connectors", "add", bad)
    assert error["code"] == "invalid_manifest" and error["param"] == "connector_key"


def test_a_failed_run_prints_its_outcome_and_exits_non_zero(scripted: Any) -> None:
    cid = scripted.connect_scripted("c")
    scripted.script("c", [{"exit": 5}])
    [outcome] = scripted.json("run", cid, code=1)
    assert outcome["status"] == "failed" and outcome["connection_id"] == cid
    assert "exited (code 5)" in outcome["error"]["message"]
    text = scripted.cli("run", cid, code=1).stdout
    assert text.startswith("failed: run_") and "gap [protocol_violation]" in text


def test_home_option_and_environment_variable_select_the_data_directory(
    owner: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner.add_connector("shell_notes")
    cid = owner.json("connect", "shell-notes", "--setting", "account=alice")["connection_id"]
    runner = CliRunner()

    def listed(args: list[str], env: dict[str, str] | None = None) -> list[str]:
        result = runner.invoke(app, [*args, "connections", "list", "--json"], env=env)
        assert result.exit_code == 0, result.output
        return [c["connection_id"] for c in json.loads(result.stdout)]

    assert listed([], env={"OWNSTREAM_HOME": str(owner.home_dir)}) == [cid]
    assert listed(["--home", str(owner.home_dir)]) == [cid]
    other = tmp_path / "other-home"
    assert listed(["--home", str(other)], env={"OWNSTREAM_HOME": str(owner.home_dir)}) == []
    assert (other / "ownstream.db").exists()
    assert listed([], env={"OWNSTREAM_HOME": str(other)}) == []

    # neither: ~/.ownstream
    fake_home = tmp_path / "user"
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.delenv("OWNSTREAM_HOME", raising=False)
    assert listed([]) == []
    assert (fake_home / ".ownstream" / "ownstream.db").exists()


def test_records_page_with_a_cursor_and_export_a_whole_stream(world: dict[str, Any]) -> None:
    owner, notes = world["owner"], world["notes"]
    first = owner.json("records", notes, "notes", "--limit", "2")
    rest = owner.json("records", notes, "notes", "--limit", "2", "--cursor", first["next_cursor"])
    paged = [r["id"] for r in first["data"] + rest["data"]]
    assert rest["has_more"] is False and rest["next_cursor"] is None
    exported = owner.cli("records", notes, "notes", "--all", "--format", "json").stdout
    everything = json.loads(exported)
    assert [r["id"] for r in everything] == paged == ["note-3", "note-2", "note-1"]
    lines = owner.cli("records", notes, "notes", "--all", "--format", "ndjson").stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == paged
    csv_text = owner.cli("records", notes, "notes", "--all", "--format", "csv").stdout
    header, *rows = csv_text.splitlines()
    assert header.startswith("id,connection_id,emitted_at,") and len(rows) == 3
    one_page = owner.cli("records", notes, "notes", "--limit", "1", "--format", "ndjson")
    assert len(one_page.stdout.splitlines()) == 1 and "more: --cursor pg1." in one_page.stderr
    wrong = owner.error("records", notes, "notes", "--cursor", "pg1.forged")
    assert wrong["code"] == "invalid_cursor"
