"""Persistence: models, the engine and its transactions, migrations."""
