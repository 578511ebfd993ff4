"""`ownstream connectors|streams|rules`: what ownstream knows how to collect."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from ownstream.cli.output import JsonOption, handles_errors, home_of, print_json, table
from ownstream.errors import InvalidRequest
from ownstream.model import ConnectorManifest, IdentityRule
from ownstream.registry.definitions import definition_document
from ownstream.registry.rules import record_rule_document, rule_document

connectors_app = typer.Typer(help="Connector types (never connections).", no_args_is_help=True)
streams_app = typer.Typer(help="Shared stream definitions.", no_args_is_help=True)
rules_app = typer.Typer(help="Source-identity rules.", no_args_is_help=True)


def manifest_summary(manifest: ConnectorManifest) -> dict[str, object]:
    policy = manifest.refresh_policy
    return {
        "connector_key": manifest.connector_key,
        "display_name": manifest.display_name,
        "version": manifest.version,
        "source": manifest.source,
        "acquisition_method": manifest.acquisition_method,
        "manifest_uri": manifest.manifest_uri,
        "identity_claim": manifest.identity_claim,
        "builtin": manifest.builtin,
        "streams": [
            {"name": s.name, "version": s.version, "shared": s.shared} for s in manifest.streams
        ],
        "setup": {
            "secrets": [
                {"name": s.name, "env": s.env, "required": s.required} for s in manifest.secrets
            ],
            "settings": [
                {"name": s.name, "env": s.env, "default": s.default} for s in manifest.settings
            ],
        },
        "refresh_policy": {
            "recommended_mode": policy.recommended_mode,
            "recommended_interval_seconds": policy.recommended_interval_seconds,
            "maximum_staleness_seconds": policy.maximum_staleness_seconds,
            "background_safe": policy.background_safe,
        },
    }


def _read_document(path: Path) -> object:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InvalidRequest(f"cannot read JSON from {path}: {exc}", param="file") from exc


@connectors_app.command("list")
@handles_errors
def connectors_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List connector types, their source, acquisition method and streams."""
    manifests = sorted(home_of(ctx).catalog.manifests.values(), key=lambda m: m.connector_key)
    if as_json:
        print_json([manifest_summary(m) for m in manifests])
        return
    table(
        "Connectors",
        ["connector_key", "source", "method", "identity claim", "streams"],
        [
            [
                m.connector_key,
                m.source,
                m.acquisition_method,
                m.identity_claim,
                ", ".join(s.name for s in m.streams),
            ]
            for m in manifests
        ],
    )


@connectors_app.command("add")
@handles_errors
def connectors_add(ctx: typer.Context, path: Path, as_json: bool = JsonOption) -> None:
    """Register a connector manifest (a JSON file, or a folder holding manifest.json)."""
    home = home_of(ctx)
    manifest = home.catalog.add_manifest(path, home.store)
    if as_json:
        print_json(manifest_summary(manifest))
    else:
        typer.echo(f"registered connector {manifest.connector_key} ({manifest.source})")


@streams_app.command("list")
@handles_errors
def streams_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List stream definitions and which connector types emit each."""
    catalog = home_of(ctx).catalog
    entries = [
        {**definition_document(d), "shared": d.shared, "emitted_by": catalog.emitters(d.name)}
        for d in catalog.all_definitions()
    ]
    if as_json:
        print_json(entries)
        return
    table(
        "Stream definitions",
        ["name", "version", "semantics", "primary key", "emitted by"],
        [
            [
                e["name"],
                e["version"],
                e["semantics"],
                ",".join(e["primary_key"]),
                ", ".join(e["emitted_by"]),
            ]
            for e in entries
        ],
    )


@streams_app.command("add")
@handles_errors
def streams_add(ctx: typer.Context, file: Path, as_json: bool = JsonOption) -> None:
    """Register a standalone shared stream definition."""
    home = home_of(ctx)
    definition = home.catalog.add_definition(_read_document(file), home.store)
    if as_json:
        print_json(definition_document(definition))
    else:
        typer.echo(f"registered stream {definition.name} v{definition.version}")


@rules_app.command("list")
@handles_errors
def rules_list(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List source-identity rules and record rules."""
    catalog = home_of(ctx).catalog
    rules = sorted(catalog.rules.values(), key=lambda r: r.rule_id)
    record_rules = sorted(catalog.record_rules.values(), key=lambda r: r.rule_id)
    if as_json:
        print_json(
            [rule_document(r) for r in rules] + [record_rule_document(r) for r in record_rules]
        )
        return
    table(
        "Identity rules",
        ["rule_id", "version", "source", "claim", "links"],
        [[r.rule_id, r.version, r.source, r.claim, ", ".join(r.connector_keys)] for r in rules],
    )
    table(
        "Record rules",
        ["rule_id", "version", "stream", "same event when", "coarse when"],
        [
            [
                r.rule_id,
                r.version,
                r.stream,
                f"{', '.join(r.match_fields)} equal, {r.time_field} within {r.window_seconds}s",
                f"{r.coarse_field} in {', '.join(r.coarse_values)}",
            ]
            for r in record_rules
        ],
    )


@rules_app.command("add")
@handles_errors
def rules_add(ctx: typer.Context, file: Path, as_json: bool = JsonOption) -> None:
    """Register a source-identity rule or a record rule (`"kind": "record"`)."""
    home = home_of(ctx)
    rule = home.catalog.add_rule(_read_document(file), home.store)
    if as_json:
        print_json(
            rule_document(rule) if isinstance(rule, IdentityRule) else record_rule_document(rule)
        )
    else:
        typer.echo(f"registered rule {rule.rule_id} v{rule.version}")
