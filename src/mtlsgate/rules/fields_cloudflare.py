"""Every field mtlsgate's edge populates, with the types of Cloudflare's reference (§8.8, §8.9),
and the Cloudflare fields it deliberately cannot offer (so such a rule is refused, not silently
never matching)."""

from __future__ import annotations

from mtlsgate.rules.scheme import BOOL, INT, IP, STRING, Scheme, Type, array, map_of

_TLS = "cf.tls_client_auth."

FIELDS: dict[str, Type] = {
    _TLS + "cert_presented": BOOL,
    _TLS + "cert_verified": BOOL,
    _TLS + "cert_revoked": BOOL,
    _TLS + "cert_issuer_dn": STRING,
    _TLS + "cert_subject_dn": STRING,
    _TLS + "cert_issuer_dn_rfc2253": STRING,
    _TLS + "cert_subject_dn_rfc2253": STRING,
    _TLS + "cert_issuer_dn_legacy": STRING,
    _TLS + "cert_subject_dn_legacy": STRING,
    _TLS + "cert_serial": STRING,
    _TLS + "cert_issuer_serial": STRING,
    _TLS + "cert_fingerprint_sha256": STRING,
    _TLS + "cert_fingerprint_sha1": STRING,
    _TLS + "cert_not_before": STRING,
    _TLS + "cert_not_after": STRING,
    _TLS + "cert_ski": STRING,
    _TLS + "cert_issuer_ski": STRING,
    _TLS + "cert_rfc9440": STRING,
    _TLS + "cert_rfc9440_too_large": BOOL,
    _TLS + "cert_chain_rfc9440": STRING,
    _TLS + "cert_chain_rfc9440_too_large": BOOL,
    "http.host": STRING,
    "http.request.method": STRING,
    "http.request.uri": STRING,
    "http.request.uri.path": STRING,
    "http.request.uri.path.extension": STRING,
    "http.request.uri.query": STRING,
    "http.request.uri.args": map_of(array(STRING)),
    "http.request.uri.args.names": array(STRING),
    "http.request.uri.args.values": array(STRING),
    "http.request.full_uri": STRING,
    "http.request.headers": map_of(array(STRING)),
    "http.request.headers.names": array(STRING),
    "http.request.headers.values": array(STRING),
    "http.request.headers.truncated": BOOL,
    "http.request.cookies": map_of(array(STRING)),
    "http.cookie": STRING,
    "http.referer": STRING,
    "http.user_agent": STRING,
    "http.x_forwarded_for": STRING,
    "http.request.version": STRING,
    "http.request.timestamp.sec": INT,
    "http.request.timestamp.msec": INT,
    "ip.src": IP,
    "ssl": BOOL,
    "cf.tls_version": STRING,
    "cf.tls_cipher": STRING,
    "cf.edge.server_port": INT,
    "cf.edge.server_ip": IP,
    "cf.ray_id": STRING,
}

_GEO = "mtlsgate has no geolocation database, so this field would never match"
_BOTS = "mtlsgate has no bot or threat scoring, so this field would never match"

UNAVAILABLE: dict[str, str] = {
    "ip.src.country": _GEO,
    "ip.src.continent": _GEO,
    "ip.src.city": _GEO,
    "ip.src.region": _GEO,
    "ip.src.region_code": _GEO,
    "ip.src.postal_code": _GEO,
    "ip.src.metro_code": _GEO,
    "ip.src.lat": _GEO,
    "ip.src.lon": _GEO,
    "ip.src.timezone": _GEO,
    "ip.src.subdivision_1_iso_code": _GEO,
    "ip.src.subdivision_2_iso_code": _GEO,
    "ip.src.asnum": _GEO,
    "ip.src.is_in_european_union": _GEO,
    "ip.geoip": _GEO,
    "ip.addr": "use ip.src (ip.addr is a deprecated alias mtlsgate does not keep)",
    "cf.threat_score": _BOTS,
    "cf.client.bot": _BOTS,
    "cf.bot_management": _BOTS,
    "cf.verified_bot_category": _BOTS,
    "cf.waf": "mtlsgate has no managed WAF scoring, so this field would never match",
    "http.request.body": "mtlsgate's rules do not inspect request bodies",
    "http.response": "response fields are not available in request phases",
    "cf.random_seed": "mtlsgate does not provide cf.random_seed",
}

SCHEME = Scheme(FIELDS, UNAVAILABLE)
