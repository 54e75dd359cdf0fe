"""Paying through a rail that writes bank files (SEPA), checked against our own record of what went where.

The folder's index cannot be the only record: once the team archives a file (uploads it to the bank
and moves it away), a payout recovered after a crash would look unwritten and go into a new file,
and the bank would pay it twice. So each EndToEndId gets a `sepa_file_entry` row BEFORE the rail
writes its file, and the file's name once the rail answers:
- an entry with a file name: the payment is in that file, never written again;
- an entry without one (a crash between the entry and the answer): the folder is asked. A file there
  carries it: recorded. The folder's index never named a file for it: writing never began (the rail
  writes the index entry before the file), so it is written now. The index names a file that is gone
  (archived, or the crash fell between index and file): nobody can tell from here whether the bank
  has it, so the payout goes to needs-review with the evidence, never into a second file;
- no entry: no file can carry it (the entry always comes first), so it is written.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlmodel import select

from partnerflow.models import session_scope, utcnow
from partnerflow.models.payouts import SepaFileEntry
from partnerflow.providers.errors import PermanentError, ProviderError
from partnerflow.providers.payout.base import NeedsReview, PayoutInstruction, RailResult, RailState
from partnerflow.providers.payout.sepa import SepaRail, end_to_end_id
from partnerflow.tasks.shared.faults import kill_point

Answer = RailResult | ProviderError


def file_of(provider_ref: str) -> str:
    """The file name in a SEPA provider ref ("pain001-<MsgId>.xml#<EndToEndId>")."""
    return provider_ref.partition("#")[0]


def pay_in_files(rail: SepaRail, items: list[tuple[int, PayoutInstruction]]) -> dict[int, Answer]:
    """Per payout id, what became of it: in a file (processing), refused, or needing review."""
    ids = {payout_id: end_to_end_id(instruction.idempotency_key) for payout_id, instruction in items}
    answers: dict[int, Answer] = {}
    unfiled: list[tuple[int, PayoutInstruction, SepaFileEntry]] = []
    to_write: list[tuple[int, PayoutInstruction]] = []
    with session_scope() as session:
        entries = {e.end_to_end_id: e for e in session.exec(
            select(SepaFileEntry).where(SepaFileEntry.end_to_end_id.in_(list(ids.values())))).all()}
        for payout_id, instruction in items:
            entry = entries.get(ids[payout_id])
            if entry is None:
                session.add(SepaFileEntry(end_to_end_id=ids[payout_id], payout_id=payout_id,
                                          amount_minor=instruction.amount_minor))
                to_write.append((payout_id, instruction))
            elif entry.file_name:
                answers[payout_id] = RailResult(RailState.PROCESSING, f"{entry.file_name}#{entry.end_to_end_id}")
            else:
                session.expunge(entry)
                unfiled.append((payout_id, instruction, entry))
    # The entries are committed: from here on a crash can never lead to a second file for these payments.
    for payout_id, instruction, entry in unfiled:
        settled = _settle_unfiled(rail, instruction, entry)
        if settled is None:
            to_write.append((payout_id, instruction))
        else:
            answers[payout_id] = settled
    if to_write:
        kill_point("payouts.before_call")
        results = rail.pay_batch([instruction for _, instruction in to_write])
        kill_point("payouts.after_accept")
        answers.update({payout_id: result for (payout_id, _), result in zip(to_write, results, strict=True)})
    _record(answers, ids)
    return answers


def _settle_unfiled(rail: SepaRail, instruction: PayoutInstruction, entry: SepaFileEntry) -> Answer | None:
    """What became of a payment whose entry has no file yet; None: writing it never began."""
    try:
        found = rail.lookup(instruction.idempotency_key)
        indexed = None if found else rail.indexed_file(instruction.idempotency_key)
    except ProviderError as exc:
        return exc
    if found is not None:
        return found
    if indexed is None:
        return None
    return NeedsReview(
        f"SEPA payment {entry.end_to_end_id} was being written to bank file {indexed} when the process stopped, "
        "and that file is no longer in the output folder: it may have been archived and sent to the bank",
        evidence={"end_to_end_id": entry.end_to_end_id, "file": indexed,
                  "entry_recorded_at": entry.created_at.isoformat(), "amount_minor": entry.amount_minor,
                  "what_to_check": "the archived file and the bank's statement for this EndToEndId"})


def _record(answers: dict[int, Answer], ids: dict[int, str]) -> None:
    """The file each payment went into; entries of payments the rail refused (no file carries them) go."""
    now = utcnow()
    with session_scope() as session:
        for payout_id, answer in answers.items():
            e2e = ids[payout_id]
            if isinstance(answer, RailResult):
                session.execute(update(SepaFileEntry).where(SepaFileEntry.end_to_end_id == e2e,
                                                            SepaFileEntry.file_name.is_(None))
                                .values(file_name=file_of(answer.provider_ref), filed_at=now))
            elif isinstance(answer, PermanentError):  # refused before any file was written
                session.execute(delete(SepaFileEntry).where(SepaFileEntry.end_to_end_id == e2e,
                                                            SepaFileEntry.file_name.is_(None)))

