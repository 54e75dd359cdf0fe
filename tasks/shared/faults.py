"""Kill points for the crash tests: SIGKILL this process at a named point in a stage's work.

A stage marks its dangerous points with `kill_point("<stage>.<point>")`; the SIGKILL tests run the
work in a subprocess armed with `armed("<stage>.<point>[:N]")` and prove the re-run does every
side effect exactly once. The point fires the N-th time it is reached in that process (default 1).

Inert unless BOTH environment variables are set, so it cannot be switched on by accident:
- PARTNERFLOW_TEST_FAULTS=1 — the test switch; without it the kill spec is never read;
- PARTNERFLOW_FAULT_KILL_AT=<stage>.<point>[:N] — where to die.

Kill points in use:
- payouts.after_claim   a chunk of payouts is claimed (status `sending`, keys recorded), nothing called;
- payouts.before_call   a payout is claimed (status `sending`, key recorded), the rail not yet called
                        (reached once per payout, also when a chunk goes to the rail in one call);
- payouts.after_accept  the rail accepted the payout, we have not recorded it;
- payouts.before_record every payout of the chunk answered by the rail, none recorded yet;
- payouts.after_record  a chunk of payouts is recorded paid, the next chunk not started;
- mail.after_send       the mail provider was called, our row still says `sending`;
- events.before_relay   a hand-off is committed in the outbox, not yet sent to Prefect;
- events.after_send     Prefect accepted the hand-offs, their rows are not yet marked sent.
"""

from __future__ import annotations

import os
import signal
from collections import defaultdict

TEST_SWITCH = "PARTNERFLOW_TEST_FAULTS"
KILL_AT = "PARTNERFLOW_FAULT_KILL_AT"

_arrivals: dict[str, int] = defaultdict(int)


def armed(spec: str) -> dict[str, str]:
    """The environment a test subprocess needs to die at `spec` ("payouts.before_call:4")."""
    return {TEST_SWITCH: "1", KILL_AT: spec}


def kill_point(name: str) -> None:
    """SIGKILL this process here when the test switch is on and the kill spec names this point."""
    if os.environ.get(TEST_SWITCH) != "1":
        return
    point, _, nth = os.environ.get(KILL_AT, "").partition(":")
    if point != name:
        return
    _arrivals[name] += 1
    if _arrivals[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
