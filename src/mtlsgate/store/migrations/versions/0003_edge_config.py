"""edge_config: DNS records, zone settings, custom certificates, managed headers, Access
certificate settings, and the edge nodes' heartbeat

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dns_records",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("content", sa.String(length=253), nullable=False),
        sa.Column("proxied", sa.Boolean(), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("created_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dns_records", schema=None) as batch_op:
        batch_op.create_index("ix_dns_records_zone_name", ["zone_id", "name"], unique=False)

    op.create_table(
        "zone_settings",
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("setting_id", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"]),
        sa.PrimaryKeyConstraint("zone_id", "setting_id"),
    )

    op.create_table(
        "custom_certificates",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("certificate", sa.Text(), nullable=False),
        sa.Column("private_key_sealed", sa.Text(), nullable=False),
        sa.Column("hosts", sa.Text(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("bundle_method", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("geo_restrictions", sa.String(length=32), nullable=True),
        sa.Column("policy", sa.Text(), nullable=True),
        sa.Column("expires_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_on", sa.DateTime(timezone=True), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("custom_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_custom_certificates_zone_id"), ["zone_id"], unique=False
        )

    op.create_table(
        "managed_headers",
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("header_id", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"]),
        sa.PrimaryKeyConstraint("zone_id", "header_id"),
    )

    op.create_table(
        "access_certificate_settings",
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("china_network", sa.Boolean(), nullable=False),
        sa.Column("client_certificate_forwarding", sa.Boolean(), nullable=False),
        sa.Column("modified_on", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["zone_id"], ["zones.id"]),
        sa.PrimaryKeyConstraint("zone_id", "hostname"),
    )

    op.create_table(
        "edge_nodes",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("config_version", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("edge_nodes")
    op.drop_table("access_certificate_settings")
    op.drop_table("managed_headers")
    with op.batch_alter_table("custom_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_custom_certificates_zone_id"))

    op.drop_table("custom_certificates")
    op.drop_table("zone_settings")
    with op.batch_alter_table("dns_records", schema=None) as batch_op:
        batch_op.drop_index("ix_dns_records_zone_name")

    op.drop_table("dns_records")
