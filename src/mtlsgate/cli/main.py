"""`mtlsgate` entry point. Results go to stdout as JSON; logs and errors go to stderr."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mtlsgate.errors import MtlsgateError
from mtlsgate.settings import (
    DEFAULT_API_LISTEN,
    DEFAULT_EDGE_LISTEN,
    PLANS,
    Settings,
    parse_listen,
)

if TYPE_CHECKING:
    from mtlsgate.store.db import Store
    from mtlsgate.store.keystore import KeyStore

# Heavy modules (SQLAlchemy, FastAPI) are imported inside the commands that need them, so
# `mtlsgate rules check` answers in a fraction of a second.

log = logging.getLogger("mtlsgate")

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default ./data, or MTLSGATE_DATA_DIR).",
)
database_option = click.option(
    "--database-url",
    default=None,
    help="PostgreSQL URL instead of DATA_DIR/mtlsgate.db (or MTLSGATE_DATABASE_URL).",
)


_SECONDS = click.FloatRange(min=0, min_open=True, max=3600)


def timeout_options(f: Any) -> Any:
    """The edge's timeouts (edge/timeouts.py has the defaults and why)."""
    for flag, help_text in (
        ("--idle-timeout", "Seconds a keep-alive connection may wait for its next request [60]."),
        ("--header-timeout", "Seconds for a TLS handshake or a request head to arrive [15]."),
        ("--origin-connect-timeout", "Seconds to connect to an origin [10]."),
        ("--origin-timeout", "Seconds for an origin's whole response [60]."),
    ):
        f = click.option(flag, type=_SECONDS, default=None, help=help_text)(f)
    return f


def _timeouts(
    idle: float | None, header: float | None, connect: float | None, origin: float | None
) -> Any:
    from mtlsgate.edge.timeouts import EdgeTimeouts

    try:
        return EdgeTimeouts.with_env(
            idle=idle, header=header, origin_connect=connect, origin_response=origin
        )
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _emit(obj: Any) -> None:
    click.echo(json.dumps(obj))


def _open(
    data_dir: Path | None, database_url: str | None, *, create: bool = False
) -> tuple[Settings, Store, KeyStore]:
    from mtlsgate.store.db import Store
    from mtlsgate.store.keystore import KeyStore

    settings = Settings.load(data_dir, database_url)
    if settings.is_sqlite and not create and not (settings.data_dir / "mtlsgate.db").exists():
        raise click.ClickException(
            f"{settings.data_dir} is not initialised: "
            f"run `mtlsgate init --data-dir {settings.data_dir} --zone ZONE`"
        )
    # The data dir holds the master key and (by default) the database: owner only.
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keystore = KeyStore.for_data_dir(settings.data_dir, create=create)
    store = Store(settings.database_url)
    store.migrate()
    return settings, store, keystore


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """mtlsgate: a self-hosted mutual-TLS gateway with a Cloudflare v4-compatible API."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic narrates every migration step at INFO; only its warnings are worth a line.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)


@cli.command()
@data_dir_option
@database_option
@click.option("--zone", "zones", multiple=True, required=True, help="Zone name (repeatable).")
@click.option("--account-name", default="mtlsgate", show_default=True)
def init(
    data_dir: Path | None,
    database_url: str | None,
    zones: Sequence[str],
    account_name: str,
) -> None:
    """Create the store, the account, its zones, managed CA and admin token."""
    from mtlsgate.services import accounts

    settings, store, keystore = _open(data_dir, database_url, create=True)
    with store.transaction() as session:
        boot = accounts.initialize(session, keystore, zone_names=zones, account_name=account_name)
    bootstrap_path = settings.data_dir / "bootstrap.json"
    if boot.api_token is not None:
        payload: dict[str, Any] = {
            "account_id": boot.account_id,
            "zones": boot.zones,
            "api_token": boot.api_token,
        }
        fd = os.open(bootstrap_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
        log.info(
            "initialised %s; admin token written to %s",
            settings.data_dir,
            bootstrap_path,
        )
    else:
        # Already initialised: the token is not shown again; bootstrap.json stays as it was.
        payload = {"account_id": boot.account_id, "zones": boot.zones}
        if bootstrap_path.exists():
            payload["api_token"] = json.loads(bootstrap_path.read_text()).get("api_token")
        log.info("%s was already initialised; zones added where new", settings.data_dir)
    _emit(payload)
    store.dispose()


@cli.command()
@data_dir_option
@database_option
@click.option(
    "--api",
    "api_listen",
    default=DEFAULT_API_LISTEN,
    show_default=True,
    help="HOST:PORT of the API.",
)
@click.option(
    "--edge",
    "edge_listen",
    default=DEFAULT_EDGE_LISTEN,
    show_default=True,
    help="HOST:PORT of the edge.",
)
@click.option("--no-edge", is_flag=True, help="Serve the API only.")
@click.option(
    "--workers", type=click.IntRange(1, 256), default=None, help="Edge workers (CPU count)."
)
@click.option("--default-hostname", default=None, help="Profile for clients that send no SNI.")
@timeout_options
def serve(
    data_dir: Path | None,
    database_url: str | None,
    api_listen: str,
    edge_listen: str,
    no_edge: bool,
    workers: int | None,
    default_hostname: str | None,
    idle_timeout: float | None,
    header_timeout: float | None,
    origin_connect_timeout: float | None,
    origin_timeout: float | None,
) -> None:
    """Serve the API (and /healthz) and the edge workers until interrupted."""
    import uvicorn

    from mtlsgate.api.app import create_app

    host, port = _listen(api_listen, "--api")
    timeouts = _timeouts(idle_timeout, header_timeout, origin_connect_timeout, origin_timeout)
    settings, store, keystore = _open(data_dir, database_url)
    children = (
        []
        if no_edge
        else _start_edge_workers(settings, edge_listen, workers, default_hostname, timeouts)
    )
    from mtlsgate.edge.runtime.config_sync import load_config

    app = create_app(store, keystore, settings.data_dir / "metrics", explain_loader=load_config)
    log.info("API listening on http://%s:%d/client/v4 (data dir %s)", host, port, settings.data_dir)
    # CRL fetching and stale-CRL notices run here, once per `serve`, not in edge workers.
    from mtlsgate.services.crl_fetcher import CrlScheduler

    crl_scheduler = CrlScheduler(store)
    crl_scheduler.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        crl_scheduler.stop()
        _stop_children(children)


@cli.command()
@data_dir_option
@database_option
@click.option("--edge", "edge_listen", default=DEFAULT_EDGE_LISTEN, show_default=True)
@click.option("--workers", type=click.IntRange(1, 256), default=None)
@click.option("--default-hostname", default=None)
@timeout_options
def edge(
    data_dir: Path | None,
    database_url: str | None,
    edge_listen: str,
    workers: int | None,
    default_hostname: str | None,
    idle_timeout: float | None,
    header_timeout: float | None,
    origin_connect_timeout: float | None,
    origin_timeout: float | None,
) -> None:
    """Run edge workers alone against a store (for a fleet on PostgreSQL)."""
    timeouts = _timeouts(idle_timeout, header_timeout, origin_connect_timeout, origin_timeout)
    settings, store, _ = _open(data_dir, database_url)
    store.dispose()
    children = _start_edge_workers(settings, edge_listen, workers, default_hostname, timeouts)
    try:
        while all(c.is_alive() for c in children):
            children[0].join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        _stop_children(children)


@cli.command()
@data_dir_option
@database_option
@click.option("--origin-port", type=click.IntRange(1, 65535), default=8081, show_default=True)
@click.option("--edge-port", type=click.IntRange(1, 65535), default=8443, show_default=True)
def demo(data_dir: Path | None, database_url: str | None, origin_port: int, edge_port: int) -> None:
    """Set up a demo hostname with a client CA, the seed's rule and a client certificate."""
    from datetime import UTC, datetime

    from mtlsgate.services.demo import set_up_demo

    settings, store, keystore = _open(data_dir, database_url)
    with store.transaction() as session:
        result = set_up_demo(
            session, keystore, settings.data_dir, origin_port=origin_port, now=datetime.now(UTC)
        )
    d, host = result.directory, result.hostname
    base = (
        f"curl --resolve {host}:{edge_port}:127.0.0.1 --cacert {settings.data_dir / 'edge-ca.pem'}"
    )
    _emit(
        {
            "hostname": host,
            "created": result.created,
            "client_certificate": str(d / "client.pem"),
            "client_key": str(d / "client.key"),
            "with_certificate": f"{base} --cert {d / 'client.pem'} --key {d / 'client.key'} "
            f"https://{host}:{edge_port}/",
            "without_certificate": f"{base} https://{host}:{edge_port}/",
        }
    )


@cli.command("echo-origin")
@click.option("--listen", default="127.0.0.1:8081", show_default=True, help="HOST:PORT.")
def echo_origin(listen: str) -> None:
    """A demo origin that answers every request with JSON describing it."""
    import asyncio

    from mtlsgate.edge.echo_origin import serve_echo

    host, port = _listen(listen, "--listen")
    log.info("echo origin listening on http://%s:%d", host, port)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_echo(host, port))


def _listen(value: str, flag: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _start_edge_workers(
    settings: Settings,
    edge_listen: str,
    workers: int | None,
    default_hostname: str | None,
    timeouts: Any,
) -> list[Any]:
    import multiprocessing
    import resource
    from datetime import UTC, datetime

    from mtlsgate.edge.runtime.tls_engine import tls_choice
    from mtlsgate.edge.runtime.worker import run_worker
    from mtlsgate.pki.edge_ca import EdgeCA

    host, port = _listen(edge_listen, "--edge")
    try:
        tls_choice()  # a bad MTLSGATE_EDGE_TLS is refused here, not in every worker
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    # Made here, once, so that workers starting together do not race to create it.
    EdgeCA.load_or_create(settings.data_dir, now=datetime.now(UTC))
    # Many keep-alive connections: take the whole open-files allowance.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = multiprocessing.get_context("spawn")
    count = workers or os.cpu_count() or 1
    children = []
    for _ in range(count):
        proc = ctx.Process(
            target=run_worker,
            args=(settings.data_dir, settings.database_url, host, port, default_hostname),
            kwargs={"timeouts": timeouts},
            daemon=True,
        )
        proc.start()
        children.append(proc)
    log.info("edge: %d worker(s) on https://%s:%d", count, host, port)
    return children


def _stop_children(children: list[Any]) -> None:
    for child in children:
        if child.is_alive():
            child.terminate()  # SIGTERM: each worker drains its requests in flight
    for child in children:
        child.join(15)
        if child.is_alive():
            child.kill()


@cli.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@data_dir_option
@database_option
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    required=True,
    help="Permission group name (repeatable).",
)
@click.option("--zone", default=None, help="Limit to this zone (name or id).")
@click.option(
    "--account",
    "account_id",
    default=None,
    help="Grant on this account (default: the only one).",
)
@click.option("--name", default="cli token", show_default=True)
def token_create(
    data_dir: Path | None,
    database_url: str | None,
    permissions: Sequence[str],
    zone: str | None,
    account_id: str | None,
    name: str,
) -> None:
    """Create a token with exactly the given permissions; prints {"id", "api_token"}."""
    from mtlsgate.services import accounts, tokens

    if zone and account_id:
        raise click.UsageError("give --zone or --account, not both")
    _, store, _ = _open(data_dir, database_url)
    with store.transaction() as session:
        zone_id = None
        if zone:
            z = accounts.resolve_zone(session, zone)
            zone_id, account_id = z.id, z.account_id
        if account_id is None:
            first = accounts.first_account(session)
            if first is None:
                raise click.ClickException("no account: run `mtlsgate init` first")
            account_id = first.id
        created = tokens.create_token(
            session,
            account_id=account_id,
            name=name,
            permissions=permissions,
            zone_id=zone_id,
        )
    _emit({"id": created.id, "api_token": created.secret})


@cli.group()
def account() -> None:
    """Account plan and quotas."""


@account.command("create")
@data_dir_option
@database_option
@click.option("--name", required=True, help="Account name.")
@click.option("--zone", "zones", multiple=True, help="Zone name (repeatable).")
def account_create(
    data_dir: Path | None, database_url: str | None, name: str, zones: Sequence[str]
) -> None:
    """Create another account (with its zones, managed CA and admin token); prints like init."""
    from mtlsgate.services import accounts

    _, store, keystore = _open(data_dir, database_url)
    with store.transaction() as session:
        boot = accounts.create_account(session, keystore, name=name, zone_names=zones)
    _emit({"account_id": boot.account_id, "zones": boot.zones, "api_token": boot.api_token})


@account.command("set-plan")
@data_dir_option
@database_option
@click.option("--account", "account_id", required=True)
@click.option("--plan", required=True, type=click.Choice(PLANS))
def set_plan(data_dir: Path | None, database_url: str | None, account_id: str, plan: str) -> None:
    """Change an account's plan (only Enterprise accounts may upload CAs)."""
    from mtlsgate.services import accounts

    _, store, _ = _open(data_dir, database_url)
    with store.transaction() as session:
        acct = accounts.set_plan(session, account_id, plan)
        _emit({"id": acct.id, "plan": acct.plan})


@account.command("set-ca-quota")
@data_dir_option
@database_option
@click.option("--account", "account_id", required=True)
@click.option("--quota", required=True, type=int)
def set_ca_quota(
    data_dir: Path | None, database_url: str | None, account_id: str, quota: int
) -> None:
    """Change how many CA certificates an account may upload (default 5)."""
    from mtlsgate.services import accounts

    _, store, _ = _open(data_dir, database_url)
    with store.transaction() as session:
        acct = accounts.set_ca_quota(session, account_id, quota)
        _emit({"id": acct.id, "ca_quota": acct.ca_quota})


@cli.group("managed-ca")
def managed_ca() -> None:
    """Rotate and retire the account's managed client-certificate CA (docs/managed-ca.md)."""


@managed_ca.command("rotate")
@data_dir_option
@database_option
@click.option("--account", "account_id", default=None, help="Account id (default: the only one).")
def managed_ca_rotate(
    data_dir: Path | None, database_url: str | None, account_id: str | None
) -> None:
    """A new managed CA signs from now on; the previous one keeps being trusted (retiring)."""
    from mtlsgate.services import managed_cas
    from mtlsgate.services.common import utcnow

    _, store, keystore = _open(data_dir, database_url)
    with store.transaction() as session:
        done = managed_cas.rotate(session, keystore, account_id=account_id, now=utcnow())
        result = {
            "account_id": done.account_id,
            "new_ca": {"id": done.new_ca.id, "name": done.new_ca.name, "status": "active"},
            "previous_ca": {
                "id": done.previous_ca.id,
                "name": done.previous_ca.name,
                "status": "retiring",
            },
            "config_version": done.config_version,
        }
    _emit(result)  # only once committed: a printed id is a CA that exists


@managed_ca.command("retire")
@data_dir_option
@database_option
@click.option("--account", "account_id", default=None, help="Account id (checked if given).")
@click.option("--ca", "ca_id", required=True, help="Id of a retiring managed CA.")
@click.option("--force", is_flag=True, help="Retire even if it still has live certificates.")
def managed_ca_retire(
    data_dir: Path | None, database_url: str | None, account_id: str | None, ca_id: str, force: bool
) -> None:
    """Stop trusting a retiring managed CA: the certificates it signed stop verifying."""
    from mtlsgate.services import managed_cas
    from mtlsgate.services.common import utcnow

    _, store, _ = _open(data_dir, database_url)
    with store.transaction() as session:
        done = managed_cas.retire(
            session, account_id=account_id, ca_id=ca_id, force=force, now=utcnow()
        )
        result = {
            "id": done.ca.id,
            "status": "retired",
            "live_certificates_cut_off": done.live_certificates,
            "config_version": done.config_version,
        }
    _emit(result)


@managed_ca.command("list")
@data_dir_option
@database_option
@click.option("--account", "account_id", default=None, help="Account id (default: the only one).")
def managed_ca_list(
    data_dir: Path | None, database_url: str | None, account_id: str | None
) -> None:
    """The account's managed CAs with their status (active, retiring, retired) and counts."""
    from mtlsgate.services import managed_cas
    from mtlsgate.services.common import utcnow

    _, store, _ = _open(data_dir, database_url)
    with store.transaction() as session:
        _emit(managed_cas.list_cas(session, account_id=account_id, now=utcnow()))


@cli.group()
def rules() -> None:
    """Check and evaluate Rules language expressions (no data dir needed)."""


@rules.command("check")
@click.argument("expression")
def rules_check(expression: str) -> None:
    """Exit 0 if EXPRESSION is valid; otherwise print the caret diagnostic and exit 1."""
    from mtlsgate.rules import RulesError, compile_expression

    try:
        compile_expression(expression)
    except RulesError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    click.echo("ok")


@rules.command("eval")
@click.argument("expression")
@click.option("--field", "fields", multiple=True, help="NAME=VALUE (repeatable).")
def rules_eval(expression: str, fields: Sequence[str]) -> None:
    """Print true or false: EXPRESSION evaluated over the given field values (others default)."""
    from mtlsgate.rules import RulesError, compile_expression
    from mtlsgate.rules.facts import facts_from_text
    from mtlsgate.rules.fields_cloudflare import SCHEME
    from mtlsgate.rules.scheme import default_value

    try:
        compiled = compile_expression(expression)
    except RulesError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    given: dict[str, str] = {}
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--field")
        given[name.strip()] = value
    try:
        facts = facts_from_text(SCHEME, given)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--field") from None
    for key in compiled.fields:
        if key not in facts:
            fld = SCHEME.get(key)
            assert fld is not None
            facts[key] = default_value(fld.type)
    click.echo("true" if compiled(facts) is True else "false")


@cli.command()
@data_dir_option
@database_option
@click.option("--zone", required=True, help="Zone (name or id).")
@click.option("--hostname", required=True, help="The hostname the client connects to.")
@click.option(
    "--cert",
    "cert_file",
    required=True,
    type=click.Path(path_type=Path),
    help="PEM file with the client's chain, leaf first (an empty file: no certificate).",
)
@click.option("--path", "request_path", default=None, help="Request path [/].")
@click.option("--method", default=None, help="Request method [GET].")
def explain(
    data_dir: Path | None,
    database_url: str | None,
    zone: str,
    hostname: str,
    cert_file: Path,
    request_path: str | None,
    method: str | None,
) -> None:
    """Print what the edge would decide for a client sending the chain in --cert (as
    POST /zones/{zone_id}/mtls/explain does; docs/explain.md)."""
    from mtlsgate.edge.runtime.config_sync import load_config
    from mtlsgate.services import accounts
    from mtlsgate.services import explain as svc
    from mtlsgate.services.permissions import ZONE_SSL_READ, Policy, Principal

    try:
        text = cert_file.read_text("ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"cannot read {cert_file} as PEM text: {e}") from None
    request = svc.parse_request(hostname, text, request_path, method)
    _, store, keystore = _open(data_dir, database_url)
    with store.transaction() as session:
        z = accounts.resolve_zone(session, zone)
        # Whoever holds the data dir operates the gateway: read access to the zone suffices.
        operator = Principal("cli", z.account_id, (Policy(ZONE_SSL_READ, "zone", z.id),))
        result = svc.explain(session, keystore, operator, z.id, request, load_config)
    click.echo(json.dumps(result, indent=2))


@cli.group("client-cert")
def client_cert() -> None:
    """Client certificates signed by the account's managed CA (docs/managed-ca.md)."""


@dataclass
class _Outputs:
    """Output files opened before signing, and the directories made for them (deepest first)."""

    files: list[tuple[Path, int]]
    made_dirs: list[Path]

    def close(self) -> None:
        for _path, fd in self.files:
            with contextlib.suppress(OSError):
                os.close(fd)

    def discard(self) -> None:
        """Nothing was issued: close and remove what was created, leave nothing behind."""
        self.close()
        for path, _fd in self.files:
            with contextlib.suppress(OSError):
                path.unlink()
        for directory in self.made_dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()


def _reserve_outputs(out_dir: Path, names: Sequence[str]) -> _Outputs:
    """Create `out_dir` (0700) and each file in it with O_EXCL (the key, first, 0600; the
    others 0644), or raise a ClickException that names the path and the reason."""
    outputs = _Outputs([], [p for p in (out_dir, *out_dir.parents) if not p.exists()])
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i, name in enumerate(names):
            path = out_dir / name
            mode = 0o600 if i == 0 else 0o644
            outputs.files.append((path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)))
    except OSError as exc:
        outputs.discard()
        where = exc.filename or out_dir
        raise click.ClickException(
            f"cannot write the output files in {out_dir} ({where}: {exc.strerror or exc}); "
            "nothing was issued"
        ) from None
    return outputs


@client_cert.command("issue")
@data_dir_option
@database_option
@click.option("--zone", required=True, help="Zone name or id.")
@click.option("--cn", "common_name", required=True, help="The certificate's common name.")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for client.key, client.pem and chain.pem (created if missing).",
)
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True)
@click.option("--validity-days", type=int, default=365, show_default=True)
def client_cert_issue(
    data_dir: Path | None,
    database_url: str | None,
    zone: str,
    common_name: str,
    out_dir: Path,
    key_type: str,
    validity_days: int,
) -> None:
    """Generate a key and CSR here, have the managed CA sign it, and write client.key (0600),
    client.pem and chain.pem (the managed CA certificate). Prints the certificate's record."""
    from mtlsgate.pki.managed_ca import generate_key_and_csr
    from mtlsgate.services import accounts
    from mtlsgate.services import client_certificates as svc
    from mtlsgate.services.common import utcnow
    from mtlsgate.services.permissions import ZONE_SSL_WRITE, Policy, Principal

    names = ("client.key", "client.pem", "chain.pem")
    existing = [n for n in names if (out_dir / n).exists()]
    if existing:
        raise click.ClickException(
            f"{out_dir} already holds {', '.join(existing)}; choose another --out directory"
        )
    generated = generate_key_and_csr(common_name, key_type=key_type)  # refuses a bad --cn
    # The files exist (empty, exclusively ours, the key owner-only) before anything is signed:
    # a directory that cannot be written must not leave an active certificate behind whose key
    # was never saved.
    outputs = _reserve_outputs(out_dir, names)
    try:
        _, store, keystore = _open(data_dir, database_url)
        with store.transaction() as session:
            z = accounts.resolve_zone(session, zone)
            # Whoever holds the data dir operates the gateway: write access to the zone suffices.
            operator = Principal("cli", z.account_id, (Policy(ZONE_SSL_WRITE, "zone", z.id),))
            view = svc.issue(
                session,
                keystore,
                operator,
                z.id,
                csr=generated.csr_pem,
                validity_days=validity_days,
                now=utcnow(),
            )
            ca_pem = accounts.active_managed_ca(session, z.account_id).certificate_pem
            cert = view.certificate
            record = {
                "id": cert.id,
                "zone_id": z.id,
                "common_name": cert.common_name,
                "serial_number": cert.serial_number,
                "fingerprint_sha256": cert.fingerprint_sha256,
                "expires_on": cert.expires_on.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "status": cert.status,
            }
            certificate_pem = cert.certificate_pem
    except BaseException:
        outputs.discard()
        raise
    store.dispose()
    contents = (generated.private_key_pem, certificate_pem, ca_pem)
    try:
        for (_path, fd), text in zip(outputs.files, contents, strict=True):
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data) :]
    except OSError as exc:
        outputs.close()
        raise click.ClickException(
            f"certificate {record['id']} was issued but writing {out_dir} failed ({exc}); "
            f"revoke it (DELETE /zones/{record['zone_id']}/client_certificates/{record['id']}) "
            "and issue another"
        ) from None
    outputs.close()
    _emit({**record, "files": {n: str(out_dir / n) for n in names}})


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="mtlsgate",
            standalone_mode=True,
        )
    except MtlsgateError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
