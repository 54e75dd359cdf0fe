"""Payouts through each partner's chosen rail and currency

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
    # No schema change: partner.payout_method and partner.payout_currency (onboarding) and payout.rail (one
    # per payout since 0001) already hold what paying each partner through their own rail needs; the rails
    # the team enabled are settings (PARTNERFLOW_PAYOUT_RAILS_ENABLED, PARTNERFLOW_PAYOUT_METHOD_RAILS).
    pass


def downgrade() -> None:
    pass
