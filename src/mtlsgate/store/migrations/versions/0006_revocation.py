"""revocation for uploaded CAs: their CRLs, per-CA policy and fetching, the account deny-list

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mtls_certificate_crls",
        sa.Column("mtls_certificate_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("crl_number", sa.String(length=64), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_count", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("updated_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(
            ["mtls_certificate_id"], ["mtls_certificates.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("mtls_certificate_id"),
    )
    op.create_index("ix_mtls_certificate_crls_account_id", "mtls_certificate_crls", ["account_id"])

    op.create_table(
        "mtls_certificate_revocation_settings",
        sa.Column("mtls_certificate_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("stale_policy", sa.String(length=16), nullable=False),
        sa.Column("fetch", sa.Boolean(), nullable=False),
        sa.Column("fetch_url", sa.Text(), nullable=True),
        sa.Column("fetch_etag", sa.String(length=255), nullable=True),
        sa.Column("fetch_last_modified", sa.String(length=64), nullable=True),
        sa.Column("last_fetch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fetch_status", sa.Text(), nullable=True),
        sa.Column("next_fetch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stale_noticed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(
            ["mtls_certificate_id"], ["mtls_certificates.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("mtls_certificate_id"),
    )
    op.create_index(
        "ix_mtls_certificate_revocation_settings_account_id",
        "mtls_certificate_revocation_settings",
        ["account_id"],
    )

    op.create_table(
        "mtls_deny_list",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=True),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mtls_deny_list_account", "mtls_deny_list", ["account_id", "created_on"])


def downgrade() -> None:
    op.drop_index("ix_mtls_deny_list_account", table_name="mtls_deny_list")
    op.drop_table("mtls_deny_list")
    op.drop_index(
        "ix_mtls_certificate_revocation_settings_account_id",
        table_name="mtls_certificate_revocation_settings",
    )
    op.drop_table("mtls_certificate_revocation_settings")
    op.drop_index("ix_mtls_certificate_crls_account_id", table_name="mtls_certificate_crls")
    op.drop_table("mtls_certificate_crls")
