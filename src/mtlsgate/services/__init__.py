"""Domain services: the one implementation of every operation, called by the API, the CLI and
the dashboard alike. Each function takes a Session (the caller owns the transaction) and, where
access matters, the Principal on whose behalf it acts."""
