"""The Cloudflare v4-compatible REST API."""
