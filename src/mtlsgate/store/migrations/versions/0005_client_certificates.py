"""client_certificates: client certificates signed by an account's managed CA

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_certificates",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("managed_ca_id", sa.String(length=36), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("csr", sa.Text(), nullable=False),
        sa.Column("common_name", sa.String(length=255), nullable=False),
        sa.Column("country", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=255), nullable=False),
        sa.Column("location", sa.String(length=255), nullable=False),
        sa.Column("organization", sa.String(length=255), nullable=False),
        sa.Column("organizational_unit", sa.String(length=255), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("ski", sa.String(length=64), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_version", sa.BigInteger(), nullable=False),
        sa.Column("issued_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"]),
        sa.ForeignKeyConstraint(["managed_ca_id"], ["managed_cas.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_client_certificates_zone_created", "client_certificates", ["zone_id", "created_on"]
    )
    op.create_index(
        "ix_client_certificates_ca_status", "client_certificates", ["managed_ca_id", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_client_certificates_ca_status", table_name="client_certificates")
    op.drop_index("ix_client_certificates_zone_created", table_name="client_certificates")
    op.drop_table("client_certificates")
