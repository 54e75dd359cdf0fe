"""What every settings model reads: PARTNERFLOW_* environment variables and an optional .env file."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from partnerflow.providers.registry import Vendor


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


class VendorSettings(EnvSettings):
    """A capability whose vendor one setting chooses from its registry (e.g. PARTNERFLOW_EMAIL_PROVIDER).

    The choice is lower-cased and must name a registered vendor, and that vendor's required
    settings must be set; each mistake is one sentence naming the setting.
    """

    choice: ClassVar[str]
    vendors: ClassVar[dict[str, Vendor]]

    @model_validator(mode="after")
    def _known_vendor_with_its_settings(self) -> Self:
        value = one_of(self.choice, getattr(self, self.choice), tuple(self.vendors))
        setattr(self, self.choice, value)
        require(self.choice, value, self, self.vendors[value].requires)
        return self
