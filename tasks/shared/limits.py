"""Limits every worker shares, kept on the Prefect server as global concurrency limits.

- `payout-batch` (1 slot): one payout batch builds or pays at a time per installation, whichever
  deployment started it. It is held only around those steps, never while a run waits (suspended)
  for its approval.
- `email-provider`, `esign-provider`, `payout-provider`: rate limits (slots that come back at a
  rate, from the settings' `limits`) taken before each call to a vendor. Embedded providers (the
  outbox, our signing page, the ledger, a SEPA file) reach no vendor and take no permit.

`ensure_limits()` writes them to the server (`partnerflow up` and `partnerflow deploy` call it).
Permits are taken a chunk at a time (up to the limit's burst): one server round trip per chunk,
never one per email.

When a limit is not on the server (no `partnerflow up` yet, a test run, an operator deleted it), or
there is no Prefect server at all, calls go ahead unlimited with one warning per process: the
limits are politeness towards vendors, never what makes a send or a payment happen once (the
database does that), and a vendor's own 429 is still retried. To switch a limit off, deactivate it
in the Prefect UI (`ensure_limits` leaves that alone). A call that cannot get a permit within
`rate_limit_wait_seconds` raises RetryableError: its work goes back to wait for the next try.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency, rate_limit
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.logging import get_run_logger
from prefect.settings import get_current_settings

from partnerflow.providers.errors import RetryableError
from partnerflow.settings import Settings, get_settings

PAYOUT_BATCH = "payout-batch"
EMAIL = "email-provider"
ESIGN = "esign-provider"
PAYOUT = "payout-provider"
# Providers that reach no vendor, by rate limit.
EMBEDDED = {EMAIL: frozenset({"outbox"}), ESIGN: frozenset({"builtin"}), PAYOUT: frozenset({"ledger", "sepa"})}
RECHECK_SECONDS = 60.0  # how long a process trusts what it read about a limit

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    name: str
    slots: int
    per_second: float = 0.0  # > 0: a rate limit whose slots come back at this rate


def wanted(settings: Settings | None = None) -> tuple[Limit, ...]:
    """The limits the settings ask for."""
    s = (settings or get_settings()).limits
    return (Limit(PAYOUT_BATCH, 1),
            Limit(EMAIL, s.email_rate_burst, s.email_rate_per_second),
            Limit(ESIGN, s.esign_rate_burst, s.esign_rate_per_second),
            Limit(PAYOUT, s.payout_rate_burst, s.payout_rate_per_second))


def ensure_limits(settings: Settings | None = None) -> dict[str, str]:
    """Create or update every limit on the Prefect server PREFECT_API_URL names; what was done, by name.

    Idempotent. Sizes and rates follow the settings; a limit an operator deactivated stays inactive.
    Raises httpx.HTTPError when the server cannot be reached.
    """
    done: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for limit in wanted(settings):
            try:
                current = client.read_global_concurrency_limit_by_name(limit.name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                    name=limit.name, limit=limit.slots, slot_decay_per_second=limit.per_second))
                done[limit.name] = "created"
                continue
            if (current.limit, current.slot_decay_per_second) == (limit.slots, limit.per_second):
                done[limit.name] = "unchanged"
                continue
            client.update_global_concurrency_limit(limit.name, GlobalConcurrencyLimitUpdate(
                limit=limit.slots, slot_decay_per_second=limit.per_second))
            done[limit.name] = "updated"
    forget()
    return done


# What this process last read about each limit: (when, slots or None when it is missing or inactive).
_known: dict[str, tuple[float, int | None]] = {}
_warned: set[str] = set()


def forget() -> None:
    """Read every limit from the server again on next use (after ensure_limits, in tests)."""
    _known.clear()


def _warn(name: str, why: str) -> None:
    if name in _warned:
        return
    _warned.add(name)
    message = f"Prefect limit {name!r} {why}; going ahead without it (`partnerflow up` creates it)."
    try:
        get_run_logger().warning(message)
    except Exception:  # outside a flow or task run
        log.warning(message)


def slots(name: str) -> int | None:
    """The limit's size when it is on the server and active; None means: not limited."""
    seen = _known.get(name)
    if seen and time.monotonic() - seen[0] < RECHECK_SECONDS:
        return seen[1]
    size = None
    if not get_current_settings().api.url:  # no shared server: nothing to share (and no ephemeral one started)
        _warn(name, "cannot be read: PREFECT_API_URL is not set")
    else:
        try:
            with get_client(sync_client=True) as client:
                found = client.read_global_concurrency_limit_by_name(name)
            size = found.limit if found.active else None
        except ObjectNotFound:
            _warn(name, "does not exist on the Prefect server")
        except httpx.HTTPError as exc:
            _warn(name, f"cannot be read ({type(exc).__name__})")
    _known[name] = (time.monotonic(), size)
    return size


class Permits:
    """Permits for up to `expected` calls to one provider, taken from its rate limit a chunk at a time.

    `take(n)` before n calls; `chunks(items)` yields items in groups of up to the burst, each after
    its permits. Permits are asked for half a burst at a time: asking for a whole burst waits until
    the limit is empty, and Prefect's retry pacing then reaches only ~60% of the rate (measured);
    half bursts reach it. After one wait timed out, every later take fails at once (RetryableError).
    """

    def __init__(self, name: str, provider: str, expected: int = 1):
        self.name, self.provider = name, provider
        self.size = None if provider in EMBEDDED[name] else slots(name)
        self.left = max(expected, 1)  # calls still expected
        self.held = 0  # permits taken and not used yet
        self.refused: RetryableError | None = None

    def take(self, count: int = 1) -> None:
        """Wait until `count` more calls may go (at most the limit's size at once)."""
        while self.size is not None and self.held < count:
            if self.refused:
                raise self.refused
            self._acquire(min(max(self.size // 2, 1), max(count - self.held, self.left)))
        self.held = max(self.held - count, 0)
        self.left = max(self.left - count, 1)

    def chunks(self, items: Sequence[T]) -> Iterator[list[T]]:
        step = self.size or len(items) or 1
        for start in range(0, len(items), step):
            part = list(items[start:start + step])
            self.take(len(part))
            yield part

    def _acquire(self, count: int) -> None:
        wait = get_settings().limits.rate_limit_wait_seconds
        try:
            rate_limit(self.name, occupy=count, timeout_seconds=wait, strict=True)
        except TimeoutError:
            self.refused = RetryableError(f"{self.provider}: no permit from rate limit {self.name!r} within "
                                          f"{wait:.0f} s; left for a later try", retry_after=wait)
            raise self.refused from None
        except ConcurrencySlotAcquisitionError as exc:  # deleted, shrunk or unreachable since we looked
            _known.pop(self.name, None)
            _warn(self.name, f"could not be used ({exc})")
            self.size = None
            return
        self.held += count


def take(name: str, provider: str, count: int = 1) -> None:
    """Wait for permits for `count` calls to `provider` (one round trip); RetryableError when none came in time."""
    Permits(name, provider, count).take(count)


def _holder() -> ConcurrencyLeaseHolder | None:
    ctx = FlowRunContext.get()
    return ConcurrencyLeaseHolder(type="flow_run", id=ctx.flow_run.id) if ctx and ctx.flow_run else None


@contextmanager
def one_payout_batch() -> Iterator[None]:
    """Hold the installation's one `payout-batch` slot; waits while another batch holds it.

    A run killed while holding it frees it when its lease ends (5 minutes without renewal).
    """
    with ExitStack() as stack:
        if slots(PAYOUT_BATCH) is not None:
            holder = _holder()
            try:
                try:
                    stack.enter_context(concurrency(PAYOUT_BATCH, strict=True, max_retries=0, holder=holder,
                                                    raise_on_lease_renewal_failure=False))
                except ConcurrencySlotAcquisitionError as exc:
                    if not _locked(exc):
                        raise
                    _say("Another payout batch is being built or paid; this one waits for it.")
                    stack.enter_context(concurrency(PAYOUT_BATCH, strict=True, holder=holder,
                                                    raise_on_lease_renewal_failure=False))
            except ConcurrencySlotAcquisitionError as exc:  # deleted or unreachable since we looked
                _known.pop(PAYOUT_BATCH, None)
                _warn(PAYOUT_BATCH, f"could not be used ({exc})")
        yield


def _locked(exc: ConcurrencySlotAcquisitionError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423


def _say(message: str) -> None:
    try:
        get_run_logger().info(message)
    except Exception:  # outside a flow or task run
        log.info(message)
