"""Every benchmark still runs: `python bench/<name>.py --smoke` ends well and prints its ratio to the floor.

Each runs in a subprocess with a clean environment (no PARTNERFLOW_* or PREFECT_* of this session or of
the developer): a benchmark builds its own sandbox, so it must not lean on what the suite set up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("[a-z]*.py"))  # _helpers are not benchmarks
# Outreach starts a Prefect test server; sign-up a real Prefect server, the web app and two runners;
# approvals the stack with its runner; workers the stack and three process workers.
TIMEOUT = {"outreach": 180, "signup": 300, "approvals": 300, "workers": 300}


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PARTNERFLOW_", "PREFECT_"))}


def test_every_benchmark_is_covered():
    assert {"approvals", "compliance", "discovery", "outreach", "payouts", "signup", "workers"} <= set(BENCHES)


@pytest.mark.parametrize("name", BENCHES)
def test_benchmarks_use_only_the_projects_code(name):
    """Benchmarks import partnerflow (fakes and sandbox in partnerflow.testing), never the suite's modules."""
    source = (ROOT / "bench" / f"{name}.py").read_text()
    assert "sys.path" not in source and "conftest" not in source


@pytest.mark.parametrize("name", BENCHES)
@pytest.mark.timeout(max(TIMEOUT.values()) + 90)  # our own limit below fires first and stops what the bench started
def test_benchmark_smoke_runs_and_reports_its_ratio(name):
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--smoke"], cwd=ROOT,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT.get(name, 120))
    except subprocess.TimeoutExpired:
        stdout, stderr = stop(proc)
        pytest.fail(f"{name} --smoke took over {TIMEOUT.get(name, 120)} s:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    finally:
        if proc.poll() is None:  # the test itself was interrupted
            stop(proc)
    assert proc.returncode == 0, f"{name}:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    assert re.search(r"ratio \d+\.\d+x", stdout), stdout


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM first: a benchmark that started servers or workers stops them (a kill would orphan them)."""
    proc.terminate()
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()
