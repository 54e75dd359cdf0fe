"""What every settings model reads: PARTNERFLOW_* environment variables and an optional .env file."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class EnvSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNERFLOW_", env_file=".env", extra="ignore")


def one_of(setting: str, value: str, choices) -> str:
    """Lower-case `value` and check it is one of `choices`, naming the setting when it is not."""
    value = value.strip().lower()
    if value not in choices:
        known = ", ".join(choices)
        raise ValueError(f"PARTNERFLOW_{setting.upper()}={value!r} is not a known choice; use one of: {known}")
    return value


def require(owner: str, value: str, settings: BaseSettings, names: tuple[str, ...]) -> None:
    """The vendor `value` of setting `owner` needs every setting in `names`."""
    for name in names:
        if not getattr(settings, name):
            raise ValueError(f"PARTNERFLOW_{owner.upper()}={value} needs PARTNERFLOW_{name.upper()} to be set")
