"""The `mtlsgate` command line."""
