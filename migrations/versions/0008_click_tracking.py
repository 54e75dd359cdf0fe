"""Clicks recorded per tracking link, and how each conversion was attributed

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import partnerflow.models.types


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('click',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('click_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('tracking_code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('clicked_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ip_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('user_agent', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('referrer', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('landing_url', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('is_bot', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('click_id')
    )

    with op.batch_alter_table('click', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_click_clicked_at'), ['clicked_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_click_partner_id'), ['partner_id'], unique=False)

    with op.batch_alter_table('conversion', schema=None) as batch_op:
        batch_op.add_column(sa.Column('click_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('customer_email_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('customer_domain_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('attribution', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f('ix_conversion_click_id'), ['click_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('conversion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conversion_click_id'))
        batch_op.drop_column('attribution')
        batch_op.drop_column('customer_domain_hash')
        batch_op.drop_column('customer_email_hash')
        batch_op.drop_column('click_id')
    with op.batch_alter_table('click', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_click_partner_id'))
        batch_op.drop_index(batch_op.f('ix_click_clicked_at'))
    op.drop_table('click')
