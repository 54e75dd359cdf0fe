"""Payouts at scale: set-based commissions and bulk batches

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import partnerflow.models.types


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.create_index('ix_payout_batch_partner', ['batch_id', 'partner_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('payout', schema=None) as batch_op:
        batch_op.drop_index('ix_payout_batch_partner')
