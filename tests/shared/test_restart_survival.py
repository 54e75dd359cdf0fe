"""A pending approval survives `kill -9` of the whole stack: after a fresh `partnerflow up` the
form is still there, and answering it in the UI completes the stage, sending the contract once.

The real command runs in a subprocess with its own data folder and Prefect home, on this test's
database; its processes are found by the PARTNERFLOW_VAR_DIR in their environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from browser import open_form, require_chromium, wait_until_finished
from factories import application
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import select
from support import mail_text, mails

from partnerflow.models import SignatureRequest, session_scope
from partnerflow.models.contracting import SignatureStatus
from partnerflow.settings import get_settings
from partnerflow.stack import free_port
from partnerflow.tasks.shared.approvals import wait_for_waiting_run


def stack_processes(var_dir: Path) -> list[psutil.Process]:
    """Every live process started for the stack in `var_dir` (`up` itself included)."""
    found = []
    for proc in psutil.process_iter(["environ", "status"]):
        if (proc.info["environ"] or {}).get("PARTNERFLOW_VAR_DIR") == str(var_dir) \
                and proc.info["status"] != psutil.STATUS_ZOMBIE:  # a zombie is already dead
            found.append(proc)
    return found


class Up:
    """`partnerflow up` in a subprocess, as an operator starts it; the same folders every time."""

    def __init__(self, tmp_path: Path):
        self.var_dir = (tmp_path / "var").resolve()
        self.outbox = tmp_path / "outbox"
        self.stderr = tmp_path / "up.stderr"
        self.prefect_port, web_port = free_port(), free_port()
        self.prefect_url, self.web_url = f"http://127.0.0.1:{self.prefect_port}", f"http://127.0.0.1:{web_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PARTNERFLOW_", "PREFECT_"))}
        self.env.update({
            "PARTNERFLOW_VAR_DIR": str(self.var_dir), "PARTNERFLOW_WEB_PORT": str(web_port),
            "PARTNERFLOW_SECRET_KEY": os.environ["PARTNERFLOW_SECRET_KEY"],
            "PARTNERFLOW_DATABASE_URL": get_settings().resolved_database_url,  # this test's database
            "PARTNERFLOW_OUTBOX_DIR": str(self.outbox), "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"})
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> None:
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "partnerflow.cli", "up", "--prefect-port", str(self.prefect_port)],
                env=self.env, stdout=subprocess.PIPE, stderr=err, text=True, cwd=self.var_dir.parent)
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            if "Press Ctrl-C to stop." in line:
                return
            if time.monotonic() > deadline:
                break
        self.proc.kill()
        pytest.fail(f"`partnerflow up` did not start: {self.stderr.read_text()[-3000:]}")

    def kill_everything(self) -> set[str]:
        """SIGKILL every process of the stack, as a power cut would; the command lines killed."""
        killed = set()
        deadline = time.monotonic() + 30
        while (victims := stack_processes(self.var_dir)) and time.monotonic() < deadline:
            for proc in victims:  # one that a dying parent had just started is caught on the next pass
                with contextlib.suppress(psutil.Error):
                    killed.add(" ".join(proc.cmdline()))
                    proc.kill()
            time.sleep(0.2)
        self.proc.wait(timeout=30)
        assert stack_processes(self.var_dir) == [], "kill -9 left processes of the stack running"
        return killed

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def wait_until_gone(self, timeout: float = 30) -> list[psutil.Process]:
        deadline = time.monotonic() + timeout
        while (left := stack_processes(self.var_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left


@pytest.fixture
def up(tmp_path):
    require_chromium()
    stack = Up(tmp_path)
    yield stack
    for proc in stack_processes(stack.var_dir):  # whatever a failed test left running
        with contextlib.suppress(psutil.Error):
            proc.kill()


@pytest.mark.slow
@pytest.mark.timeout(480)  # two stack starts; on a loaded machine each can take minutes
def test_a_pending_approval_survives_kill_9_of_every_process(up):
    up.start()
    applicant = application(partner_type="affiliate")  # affiliates are decided by a person
    assert httpx.post(f"{up.web_url}/api/applications", json=applicant, timeout=30).status_code == 202
    with temporary_settings({PREFECT_API_URL: up.prefect_url + "/api"}):
        run = wait_for_waiting_run("contract-application", timeout=120)

        killed = up.kill_everything()
        assert any("prefect server start" in c for c in killed) and any("partnerflow.runner" in c for c in killed)
        assert any("uvicorn" in c for c in killed)
        up.start()

        with get_client(sync_client=True) as client:
            assert client.read_flow_run(run.id).state.name == "Suspended"
        with open_form(up.prefect_url, run.id) as form:
            form.choose("Decision", "approve").fill("Reviewer", "Dana Reviewer")
            assert form.submit() == []
        assert wait_until_finished(run.id).is_completed()

    with session_scope() as session:
        requests = session.exec(select(SignatureRequest)).all()
    assert [(r.signer_email, r.status) for r in requests] == [(applicant["email"], SignatureStatus.SENT)]
    signing = [m for m in mails(up.outbox) if "/sign/" in mail_text(m)]
    assert len(signing) == 1 and applicant["email"] in signing[0]["To"]

    assert up.stop() == 0
    assert up.wait_until_gone() == []
