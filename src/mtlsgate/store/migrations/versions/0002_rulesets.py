"""rulesets: rulesets, their rules, and every version's snapshot

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rulesets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("zone_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["zone_id"],
            ["zones.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rulesets", schema=None) as batch_op:
        batch_op.create_index("ix_rulesets_zone_phase", ["zone_id", "phase"], unique=False)

    op.create_table(
        "ruleset_rules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("ruleset_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("action_parameters", sa.Text(), nullable=True),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("logging", sa.Text(), nullable=True),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ruleset_id"], ["rulesets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ruleset_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ruleset_rules_ruleset_id"), ["ruleset_id"], unique=False
        )

    op.create_table(
        "ruleset_versions",
        sa.Column("ruleset_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ruleset_id"], ["rulesets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ruleset_id", "version"),
    )


def downgrade() -> None:
    op.drop_table("ruleset_versions")
    with op.batch_alter_table("ruleset_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ruleset_rules_ruleset_id"))

    op.drop_table("ruleset_rules")
    with op.batch_alter_table("rulesets", schema=None) as batch_op:
        batch_op.drop_index("ix_rulesets_zone_phase")

    op.drop_table("rulesets")
