"""Crash detection and bounded retries: two Prefect automations on the server, kept by name.

A run whose process died without a word (SIGKILL, the OOM killer, a machine restart, a worker lost
with its host) would stay Running forever, and a deployment with a concurrency limit would start
nothing more. `ensure_automations()` makes sure the server holds these two automations: it creates
one that is missing, changes one that differs in place, and leaves an identical one alone, so the
windows it is timing survive a restart. `partnerflow up` and `partnerflow deploy` call it every time;
an automation a person paused in the UI stays paused.

1. Crash runs that stopped beating (CRASH_SILENT_RUNS). Every run sends a heartbeat every
   HEARTBEAT_SECONDS (30 s, deployments/__init__.py). After a run's Running event or a heartbeat,
   the server expects another heartbeat, a terminal state or a suspension within WINDOW (5 min:
   ten beats); otherwise it marks the run Crashed (Prefect's "detect zombie flows" recipe).
   - Why ten beats and not three: a busy server can drop a live run's heartbeats for over a minute
     (seen with 20 runs starting at once on a loaded machine). With 90 s such a run was crashed,
     retried while still running, and then failed. Five minutes of silence is a dead process, and
     nothing in a partner program needs it found sooner.
   - The Running event counts too, so a process that died before its first heartbeat went out is
     caught.
   - Suspended and Paused count as an answer: a run waiting for an approval form has no process
     and sends no heartbeat.
   - Prefect refuses Crashed after a terminal state, so a late heartbeat from a finished run
     changes nothing.
   A dead run is marked Crashed 4.5 to about 5 min after its process died: WINDOW minus the time
   since its last beat, plus up to 5 s for the server's periodic evaluation.

2. Retry crashed runs that are safe to re-run (RETRY_CRASHED_RUNS). It reacts to
   `prefect.flow-run.Crashed` events. These come from the automation above, or from a runner or
   worker that saw its child process die. If the run is tagged RETRY_ON_CRASH_TAG (its deployment's
   row says retry_on_crash), the automation sets that same run to Scheduled "AwaitingRetry", as the
   UI's Retry button does. The run keeps its id and parameters, and the next runner or worker that
   polls picks it up.
   - Retries are bounded by the run count that Prefect puts on the event. Only runs that crashed on
     attempts 1 to MAX_CRASH_RETRIES match. A run that crashes every time is retried that many
     times and then stays Crashed for a person to look at.
   - A run that crashed before it ever started (run count 0: its process could not start) is not
     retried, because starting it again would fail the same way.
   - Payout batches are not tagged. A person checks the payout rail first, then presses Retry.

Why automations and not a sweep flow: they run inside the Prefect server, so they need no runner
to be alive (the runner may be what died). They act within seconds of the event, and a person can
see and pause them in the UI (Automations). Why the same run and not a new one (RunDeployment): the
run count that bounds the retries lives on the run (a new run would start counting from zero and
a run that always crashes would loop), and the UI shows one run with its attempts.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from partnerflow.deployments import HEARTBEAT_SECONDS, RETRY_ON_CRASH_TAG

CRASH_SILENT_RUNS = "partnerflow: crash runs that stopped beating"
RETRY_CRASHED_RUNS = "partnerflow: retry crashed runs that are safe to re-run"
WINDOW = timedelta(seconds=10 * HEARTBEAT_SECONDS)
MAX_CRASH_RETRIES = 2

_FLOW_RUNS = {"prefect.resource.id": "prefect.flow-run.*"}
_ALIVE_OR_DONE = {f"prefect.flow-run.{name}" for name in (
    "heartbeat", "Completed", "Failed", "Cancelled", "Crashed", "Suspended", "Paused")}


def crash_silent_runs(window: timedelta = WINDOW) -> AutomationCore:
    seconds = int(window.total_seconds())
    return AutomationCore(
        name=CRASH_SILENT_RUNS, tags=["partnerflow"],
        description=f"A flow run that sent no heartbeat for {seconds} s (its process died) is marked Crashed.",
        trigger=EventTrigger(
            after={"prefect.flow-run.Running", "prefect.flow-run.heartbeat"}, expect=_ALIVE_OR_DONE,
            match=_FLOW_RUNS, for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=window),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {seconds} s: the process running this flow run died.")],
    )


def retry_crashed_runs(max_retries: int = MAX_CRASH_RETRIES) -> AutomationCore:
    return AutomationCore(
        name=RETRY_CRASHED_RUNS, tags=["partnerflow"],
        description=(f"A crashed flow run tagged {RETRY_ON_CRASH_TAG} (safe to run again) is scheduled again, "
                     f"at most {max_retries} times."),
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match={**_FLOW_RUNS, "prefect.run-count": [str(n) for n in range(1, max_retries + 1)]},
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{RETRY_ON_CRASH_TAG}"},
            for_each={"prefect.resource.id"}, posture=Posture.Reactive, threshold=1),
        actions=[ChangeFlowRunState(
            state=StateType.SCHEDULED, name="AwaitingRetry",
            message=f"Retried after a crash: this deployment is safe to run again (at most {max_retries} times).")],
    )


def ensure_automations(window: timedelta = WINDOW, max_retries: int = MAX_CRASH_RETRIES) -> dict[str, UUID]:
    """Create or update the crash automations on the server PREFECT_API_URL names; their ids by name.

    Safe on every start: an automation that is already as wanted is not touched. Changing one would
    give its trigger a new id, and the windows it is timing for live runs would be lost.
    """
    ids: dict[str, UUID] = {}
    with get_client(sync_client=True) as client:
        for wanted in (crash_silent_runs(window), retry_crashed_runs(max_retries)):
            found = client.read_automations_by_name(wanted.name)
            for duplicate in found[1:]:  # two starts at the same moment may both have created it
                client.delete_automation(duplicate.id)
            if not found:
                ids[wanted.name] = client.create_automation(wanted)
                continue
            current = found[0]
            wanted.enabled = current.enabled  # paused in the UI on purpose: leave it paused
            if AutomationCore.model_validate(current.model_dump(exclude={"id"})) != wanted:
                client.update_automation(current.id, wanted)
            ids[wanted.name] = current.id
    return ids
