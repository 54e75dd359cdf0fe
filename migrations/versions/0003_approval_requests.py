"""approval requests: questions put to a person, for the timeout sweep and status

Every approval form is a suspended Prefect run that holds no process; this table is our own
record of each question, so a sweep can apply the safe default when nobody answers in time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import partnerflow.models.types


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('approval_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('flow_run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('asked_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('answered_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('closed_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )

    with op.batch_alter_table('approval_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approval_request_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_approval_request_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_approval_request_subject_id'), ['subject_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_approval_request_subject_type'), ['subject_type'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('approval_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approval_request_subject_type'))
        batch_op.drop_index(batch_op.f('ix_approval_request_subject_id'))
        batch_op.drop_index(batch_op.f('ix_approval_request_status'))
        batch_op.drop_index(batch_op.f('ix_approval_request_expires_at'))
    op.drop_table('approval_request')
