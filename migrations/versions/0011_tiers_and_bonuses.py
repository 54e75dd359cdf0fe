"""Tier rules, combined terms and bonuses

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import partnerflow.models.types


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bonus',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('earned_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('granted_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('created_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('bonus', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bonus_partner_id'), ['partner_id'], unique=False)

    op.create_table('tier_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('from_tier', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('to_tier', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('terms_after', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('decision_note', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('flow_run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('contract_id', sa.Integer(), nullable=True),
    sa.Column('effective_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('applied_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', partnerflow.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['contract.id'], ),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('tier_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tier_change_partner_id'), ['partner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tier_change_status'), ['status'], unique=False)

    # Bonus lines are commissions without a conversion; existing rows are conversions' commissions.
    with op.batch_alter_table('commission', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default='conversion'))
        batch_op.add_column(sa.Column('bonus_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.alter_column('conversion_id', existing_type=sa.Integer(), nullable=True)
        batch_op.create_unique_constraint('uq_commission_bonus_id', ['bonus_id'])
        batch_op.create_foreign_key('fk_commission_bonus_id_bonus', 'bonus', ['bonus_id'], ['id'])


def downgrade() -> None:
    # Bonus lines have no conversion: they cannot exist under the older schema.
    op.execute("DELETE FROM commission WHERE conversion_id IS NULL")
    with op.batch_alter_table('commission', schema=None) as batch_op:
        batch_op.drop_constraint('fk_commission_bonus_id_bonus', type_='foreignkey')
        batch_op.drop_constraint('uq_commission_bonus_id', type_='unique')
        batch_op.alter_column('conversion_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('reason')
        batch_op.drop_column('bonus_id')
        batch_op.drop_column('kind')
    with op.batch_alter_table('tier_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tier_change_status'))
        batch_op.drop_index(batch_op.f('ix_tier_change_partner_id'))
    op.drop_table('tier_change')
    with op.batch_alter_table('bonus', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bonus_partner_id'))
    op.drop_table('bonus')
