"""Partner portal: sign-in links, sessions and payout-detail changes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import partnerflow.models.types


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('portal_sign_in_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('portal_sign_in_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_sign_in_link_partner_id'), ['partner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_portal_sign_in_link_token_hash'), ['token_hash'], unique=True)

    op.create_table('portal_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('session_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('portal_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_portal_session_partner_id'), ['partner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_portal_session_session_hash'), ['session_hash'], unique=True)

    op.create_table('payout_details_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('payout_method', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('payout_currency', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('details_encrypted', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('details_masked', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('requested_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('hold_until', partnerflow.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payout_details_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_details_change_partner_id'), ['partner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payout_details_change_token_hash'), ['token_hash'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('payout_details_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_details_change_token_hash'))
        batch_op.drop_index(batch_op.f('ix_payout_details_change_partner_id'))
    op.drop_table('payout_details_change')
    with op.batch_alter_table('portal_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_session_session_hash'))
        batch_op.drop_index(batch_op.f('ix_portal_session_partner_id'))
    op.drop_table('portal_session')
    with op.batch_alter_table('portal_sign_in_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_portal_sign_in_link_token_hash'))
        batch_op.drop_index(batch_op.f('ix_portal_sign_in_link_partner_id'))
    op.drop_table('portal_sign_in_link')
