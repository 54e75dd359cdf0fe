"""Payout recovery, needs-review payouts, SEPA file entries and the installation namespace

- payout.first_sent_at: when the rail was first called, so a payout is never re-sent to a provider
  whose key dedup window (PayPal: 30 days) is over;
- sepa_file_entry: which EndToEndId went into which bank file, so an archived file still counts;
- installation: one row with a random namespace for new payout keys (existing payouts keep the key
  stored on their row, so payouts in flight are looked up under the key they were sent with).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import uuid
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa
import sqlmodel
import partnerflow.models.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_sent_at', partnerflow.models.types.UTCDateTime(timezone=True),
                                      nullable=True))

    op.create_table('sepa_file_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('end_to_end_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('file_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('filed_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['payout_id'], ['payout.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('end_to_end_id')
    )
    with op.batch_alter_table('sepa_file_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sepa_file_entry_payout_id'), ['payout_id'], unique=False)

    installation = op.create_table('installation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('namespace', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('namespace')
    )
    # Made here, in the database, so every process and worker of this installation shares it.
    op.bulk_insert(installation, [{'id': 1, 'namespace': uuid.uuid4().hex, 'created_at': datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table('installation')
    with op.batch_alter_table('sepa_file_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sepa_file_entry_payout_id'))
    op.drop_table('sepa_file_entry')
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.drop_column('first_sent_at')
