"""managed CA rotation: a managed CA can be retired (no longer trusted at the edge)

Existing rows keep `retired_on` NULL: the one active CA of each account stays active and
trusted, so stored hostname associations and certificates work unchanged.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("managed_cas") as batch:
        batch.add_column(sa.Column("retired_on", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("managed_cas") as batch:
        batch.drop_column("retired_on")
