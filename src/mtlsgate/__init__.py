"""mtlsgate: a self-hosted mutual-TLS gateway with a Cloudflare v4-compatible API."""

__version__ = "0.1.0"
