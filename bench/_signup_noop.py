"""The floor's flow for bench/signup.py: does nothing (importable by the runner subprocess)."""

from prefect import flow


@flow(name="bench-noop-signup")
def noop_signup(application_id: int) -> int:
    return application_id
