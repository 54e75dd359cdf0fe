"""Re-encrypting data at rest under the newest key (`partnerflow keys rotate`).

Every column named `*_encrypted` holds `partnerflow.secrets.encrypt` output, which starts with
the id of its key. Rows are taken in batches of `batch_size`, one transaction each, so a large
table never sits in one long transaction; each batch is audited. A row changed by someone else
between our read and our write is left alone (the update matches the old value), and a value
whose key is no longer listed is counted, never lost.
"""

from __future__ import annotations

from collections import Counter

from cryptography.fernet import InvalidToken
from sqlalchemy import Column, Table, select, update
from sqlmodel import SQLModel

from partnerflow.models import audit, session_scope
from partnerflow.secrets import encrypted_key_id, keys, reencrypt


def encrypted_columns() -> list[tuple[Table, Column]]:
    """Every (table, column) holding encrypted values, found by the column naming rule."""
    return [(table, column) for table in SQLModel.metadata.sorted_tables for column in table.columns
            if column.name.endswith("_encrypted")]


def values_by_key() -> dict[str, int]:
    """How many encrypted values each key id holds ('none' for values from before key ids)."""
    counts: Counter[str] = Counter()
    with session_scope() as session:
        for _table, column in encrypted_columns():
            for (value,) in session.execute(select(column).where(column.is_not(None))):
                counts[encrypted_key_id(value) or "none"] += 1
    return dict(counts)


def rotate(batch_size: int = 500, actor: str = "partnerflow keys rotate") -> dict[str, int]:
    """Re-encrypt every value not yet under the newest key; returns counts."""
    newest = keys()[0].id
    totals: Counter[str] = Counter({"reencrypted": 0, "unreadable": 0, "changed_meanwhile": 0})
    for table, column in encrypted_columns():
        key_column = next(iter(table.primary_key.columns))
        after = None
        while True:
            with session_scope() as session:
                query = (select(key_column, column)
                         .where(column.is_not(None), ~column.like(f"{newest}:%"))
                         .order_by(key_column).limit(batch_size))
                if after is not None:
                    query = query.where(key_column > after)
                batch = session.execute(query).all()
                if not batch:
                    break
                after = batch[-1][0]
                counts = _reencrypt_batch(session, table, key_column, column, batch)
                totals.update(counts)
                audit(session, actor=actor, action="keys.reencrypted", subject_type=table.name,
                      subject_id=column.name, details={"key_id": newest, "first_id": batch[0][0],
                                                       "last_id": after, **counts})
    with session_scope() as session:
        audit(session, actor=actor, action="keys.rotated", subject_type="secret_key", subject_id=newest,
              details=dict(totals))
    return dict(totals)


def _reencrypt_batch(session, table: Table, key_column: Column, column: Column, batch) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row_id, value in batch:
        try:
            fresh = reencrypt(value)
        except InvalidToken:
            counts["unreadable"] += 1  # its key is no longer listed: kept as it is, reported
            continue
        changed = session.execute(update(table).where(key_column == row_id, column == value)
                                  .values({column.name: fresh})).rowcount
        counts["reencrypted" if changed else "changed_meanwhile"] += 1
    return counts
