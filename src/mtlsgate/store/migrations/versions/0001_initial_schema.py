"""initial schema

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("ca_quota", sa.Integer(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "config_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_account_id"), ["account_id"], unique=False)

    op.create_table(
        "managed_cas",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("private_key_sealed", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("managed_cas", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_managed_cas_account_id"), ["account_id"], unique=False)

    op.create_table(
        "mtls_certificates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("ca", sa.Boolean(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("certificates", sa.Text(), nullable=False),
        sa.Column("private_key_sealed", sa.Text(), nullable=True),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("expires_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mtls_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mtls_certificates_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "zones",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("zones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_zones_account_id"), ["account_id"], unique=False)

    op.create_table(
        "hostname_associations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("ca_kind", sa.String(length=16), nullable=False),
        sa.Column("ca_id", sa.String(length=36), nullable=False),
        sa.Column("deployed_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["zone_id"],
            ["zones.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("zone_id", "hostname", "ca_id", name="uq_association"),
    )
    with op.batch_alter_table("hostname_associations", schema=None) as batch_op:
        batch_op.create_index("ix_association_ca", ["ca_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_hostname_associations_zone_id"), ["zone_id"], unique=False
        )

    op.create_table(
        "token_policies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("permission", sa.String(length=128), nullable=False),
        sa.Column("scope_kind", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("token_policies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_token_policies_token_id"), ["token_id"], unique=False)

    # The single config-version row every change bumps (store.db.bump_config_version).
    op.execute("INSERT INTO config_state (id, version) VALUES (1, 0)")


def downgrade() -> None:

    with op.batch_alter_table("token_policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_token_policies_token_id"))

    op.drop_table("token_policies")
    with op.batch_alter_table("hostname_associations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hostname_associations_zone_id"))
        batch_op.drop_index("ix_association_ca")

    op.drop_table("hostname_associations")
    with op.batch_alter_table("zones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_zones_account_id"))

    op.drop_table("zones")
    with op.batch_alter_table("mtls_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mtls_certificates_account_id"))

    op.drop_table("mtls_certificates")
    with op.batch_alter_table("managed_cas", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_managed_cas_account_id"))

    op.drop_table("managed_cas")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_account_id"))

    op.drop_table("api_tokens")
    op.drop_table("config_state")
    op.drop_table("accounts")
