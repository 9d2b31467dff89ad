"""orders.body: each order's served bytes, stored beside its rows

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00

A nullable column without a default is a change of the catalog only: no rewrite of the table and
no scan, however many orders it holds, so the ACCESS EXCLUSIVE lock it takes lasts milliseconds
(and env.py's lock_timeout bounds the wait for it behind the consumer's transactions). Orders
stored before it keep a NULL body, which readers assemble from the rows as before until
`flask backfill-bodies` has filled them in.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('orders', sa.Column('body', sa.LargeBinary(), nullable=True))


def downgrade():
    op.drop_column('orders', 'body')
