"""Webhook and key hardening: signature requests keep the reference they are known by at the vendor

signature_request.reference is fixed when the row is made (random), so a key rotation between an
unclear send and its follow-up search cannot change it. Existing rows keep NULL: their reference was
a keyed hash under the key newest at the time, which the sending task still derives under every
listed key (the migration cannot know which key that was, nor should it read the secret key).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import partnerflow.models.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('signature_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f('ix_signature_request_reference'), ['reference'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('signature_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signature_request_reference'))
        batch_op.drop_column('reference')
