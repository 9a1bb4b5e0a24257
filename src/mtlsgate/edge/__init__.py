"""The data plane: TLS termination with per-hostname client certificates, rules, proxying."""
