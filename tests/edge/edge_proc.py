"""A real edge worker process for tests: `python -m tests.edge.edge_proc CONFIG.json`.

Builds a Snapshot by hand from certificate files named in the config, starts the echo origin and
one EdgeWorker under uvloop on free 127.0.0.1 ports, and prints `ready EDGE_PORT ORIGIN_PORT`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import uvloop
from cryptography import x509

from mtlsgate.edge.builder import RuleData, compile_late_transform
from mtlsgate.edge.echo_origin import EchoProtocol
from mtlsgate.edge.runtime.server import EdgeWorker
from mtlsgate.edge.snapshot import FirewallRule, HostProfile, Origin, Snapshot
from mtlsgate.edge.tls import ServerIdentity, build_context
from mtlsgate.rules import compile_expression
from mtlsgate.rules.compiler import compile_first_match

SEED_RULE = '(http.host in {"api.example.com"} and not cf.tls_client_auth.cert_verified)'

# xform.example.com: mTLS without a block rule, Access certificate forwarding, and these
# late-transform rules (tests/edge/test_transforms.py).
TRANSFORM_RULES = (
    # RFC 9440 forwarding as Cloudflare documents it.
    (
        "cf.tls_client_auth.cert_verified and not cf.tls_client_auth.cert_revoked",
        {
            "Client-Cert": {"operation": "set", "expression": "cf.tls_client_auth.cert_rfc9440"},
            "Client-Cert-Chain": {
                "operation": "set",
                "expression": "cf.tls_client_auth.cert_chain_rfc9440",
            },
        },
    ),
    (
        "true",
        {
            "X-Static": {"operation": "set", "value": "static value"},
            "X-Gone": {"operation": "remove"},
            "X-Decoded": {"operation": "set", "expression": "url_decode(http.request.uri.query)"},
            "X-Subject": {"operation": "set", "expression": "cf.tls_client_auth.cert_subject_dn"},
            # The edge's own headers: dropped by the builder.
            "cf-cert-verified": {"operation": "set", "value": "true"},
            "X-Forwarded-For": {"operation": "remove"},
        },
    ),
    # A later rule sees what an earlier one did.
    (
        'http.request.uri.path eq "/override"',
        {
            "X-Static": {"operation": "remove"},
            "X-Gone": {"operation": "set", "value": "back"},
            "X-Forwarded-Proto": {"operation": "set", "value": "http"},
            "CF-Connecting-IP": {"operation": "remove"},
        },
    ),
    # Client-Cert set statically: the rule, not the client, decides what the origin sees.
    (
        'http.request.uri.path eq "/static-cert"',
        {"Client-Cert": {"operation": "set", "value": ":c3RhdGlj:"}},
    ),
)


async def main(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    ident = ServerIdentity(
        Path(config["edge_chain"]).read_text(), Path(config["edge_key"]).read_text()
    )
    ca = x509.load_pem_x509_certificate(Path(config["client_ca"]).read_bytes())
    worker: EdgeWorker | None = None

    def on_sni(conn: Any) -> None:
        assert worker is not None
        worker.on_sni(conn)

    echo = await loop.create_server(EchoProtocol, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    mctx = build_context(
        ident, trust_anchors=[ca], advertise=[ca], request_client_cert=True, on_sni=on_sni
    )
    pctx = build_context(ident, on_sni=on_sni)
    firewall = compile_first_match([compile_expression(SEED_RULE)])
    origin = Origin("127.0.0.1", echo_port)
    api = HostProfile(
        "api.example.com",
        "z",
        mctx,
        True,
        origin,
        firewall,
        (FirewallRule("r1", "block"),),
        managed_cert_headers=True,
    )
    hosts = {
        "api.example.com": api,
        "open.example.com": HostProfile("open.example.com", "z", pctx, False, origin),
    }
    hosts["xform.example.com"] = HostProfile(
        "xform.example.com",
        "z",
        mctx,
        True,
        origin,
        managed_cert_headers=True,
        late_transform=compile_late_transform(
            [
                RuleData(f"t{i}", expression, "rewrite", json.dumps({"headers": headers}))
                for i, (expression, headers) in enumerate(TRANSFORM_RULES)
            ]
        ),
        client_cert_forwarding=True,
    )
    for name, port in config.get("extra_hosts", {}).items():
        hosts[name] = HostProfile(name, "z", pctx, False, Origin("127.0.0.1", int(port)))
    wild = HostProfile(
        "*.wild.example.com",
        "z",
        mctx,
        True,
        origin,
        compile_first_match([compile_expression("not cf.tls_client_auth.cert_verified")]),
        (FirewallRule("r2", "block"),),
    )
    worker = EdgeWorker(Snapshot(1, hosts, {"wild.example.com": wild}, default=api), loop)
    server = await loop.create_server(worker.protocol_factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port} {echo_port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(json.loads(Path(sys.argv[1]).read_text())))
