"""request_events: a bounded sample of the requests the edge served, and exact per-minute counts

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("mtls", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("ms", sa.Float(), nullable=False),
        sa.Column("origin_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_request_events_zone_id", "request_events", ["zone_id", "id"])

    op.create_table(
        "request_event_counts",
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("mtls", sa.String(length=32), nullable=False),
        sa.Column("status", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "hostname", "mtls", "status", "action"),
    )
    op.create_index(
        "ix_request_event_counts_zone_minute", "request_event_counts", ["zone_id", "minute"]
    )


def downgrade() -> None:
    op.drop_index("ix_request_event_counts_zone_minute", table_name="request_event_counts")
    op.drop_table("request_event_counts")
    op.drop_index("ix_request_events_zone_id", table_name="request_events")
    op.drop_table("request_events")
