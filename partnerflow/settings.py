"""Settings: environment variables prefixed PARTNERFLOW_ and an optional .env file.

One small model per capability, composed here. A capability's settings are read and
checked the first time something uses them, so a wrong payout setting never stops mail
delivery; `check_settings()` (run by `partnerflow up` and the CLI) checks every one and
turns the first mistake into one `ConfigError` sentence naming the setting.

`get_settings()` is cached; tests call `reset_settings()` after changing the environment.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator

from partnerflow.providers.email.settings import MailSettings
from partnerflow.providers.esign.settings import EsignSettings
from partnerflow.providers.payout.settings import PayoutRailSettings
from partnerflow.providers.secret_settings import checked_secret
from partnerflow.providers.settings_base import EnvSettings

T = TypeVar("T", bound=EnvSettings)
MIN_SECRET_KEY_LENGTH = 32  # `secrets.token_urlsafe(24)`; the generated key file holds 64 characters


class ConfigError(Exception):
    """A setting is wrong; the message is one sentence naming it."""


class DatabaseSettings(EnvSettings):
    database_url: str = ""  # default: the SQLite file var/partnerflow.db


class WebSettings(EnvSettings):
    web_host: str = "127.0.0.1"
    web_port: int = 8765
    # Largest request body (bytes) any route reads, webhooks included; a larger one gets 413 unread.
    web_max_body_bytes: int = Field(1_000_000, ge=1024)
    # SendGrid Inbound Parse posts the whole reply, attachments included (SendGrid's own cap is 30 MB).
    web_max_inbound_mail_bytes: int = Field(30_000_000, ge=1024)
    # Proxies whose X-Forwarded-For is believed (IP addresses or networks, comma-separated); empty: none,
    # the client address is the connection's.
    web_trusted_proxies: str = ""
    # Where /apply's rate-limit counters live: memory:// (this process only) or redis://host:port, which
    # every web process shares.
    web_rate_limit_storage: str = "memory://"
    web_rate_limit_key_prefix: str = "partnerflow"
    # Applications accepted per client address and per email domain (limits' notation, ";" between rules).
    web_apply_limit_per_ip: str = "5/minute;20/hour"
    web_apply_limit_per_domain: str = "10/hour;50/day"

    @field_validator("web_apply_limit_per_ip", "web_apply_limit_per_domain")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many  # only where web settings are read

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as '5/minute;20/hour'") from None
        return value

    @field_validator("web_trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value


class DiscoverySettings(EnvSettings):
    discovery_fetch_concurrency: int = 10
    discovery_fetch_delay_seconds: float = 1.0  # between two requests to the same host
    discovery_fetch_timeout_seconds: float = 10.0
    discovery_fetch_max_bytes: int = 2_000_000
    discovery_respect_robots: bool = True
    # Candidate URLs come from third-party lists: refuse hosts on loopback/private networks unless allowed.
    discovery_allow_private_addresses: bool = False
    discovery_enrich_chunk_size: int = 100  # prospects per Prefect task
    discovery_scoring_policy: Path | None = None  # default: templates/discovery/scoring_policy.yaml


class OutreachSettings(EnvSettings):
    daily_send_cap: int = 500
    # Local business hours [start, end) on weekdays, when the recipient's timezone is known.
    outreach_business_hours_start: int = 9
    outreach_business_hours_end: int = 17
    outreach_batch_size: int = 1000  # messages per Prefect task (and per SendGrid request at most)
    # A message whose send timed out stays unconfirmed this long waiting for the provider's events;
    # after that it is marked failed (never re-sent blindly) and the sequence moves on.
    outreach_reconcile_after_seconds: int = 24 * 3600
    # How long a send run holds the enrollments it claimed without renewing; it renews before each part it
    # hands to the provider, so this only has to outlast one part. A run that died frees its rows after it.
    outreach_claim_lease_seconds: int = Field(1800, ge=60)


class ContractingSettings(EnvSettings):
    approval_timeout_seconds: int = 7 * 24 * 3600
    approval_policy_path: Path | None = None  # default: templates/contracting/approval_policy.yaml
    # Countersignature (builtin signing only): when set and the approval policy's `countersign` rule
    # matches, the company signer signs after the partner, and only then is the contract signed.
    company_signer_name: str = ""
    company_signer_email: str = ""
    signing_reminder_days: int = 3  # remind every N days while unsigned
    signing_max_reminders: int = 3
    signing_expiry_days: int = 14  # expire (and void at the provider) after M days


class OnboardingSettings(EnvSettings):
    onboarding_link_days: int = 30  # lifetime of the tax form and payout details link
    activation_nudge_days: int = 14  # days without a click or conversion before a nudge
    activation_dormant_days: int = 60
    partner_landing_url: str = "https://acme.example/"  # where /r/{tracking_code} redirects (with ?ref=code)
    # Hosts a deep link (/r/{code}?to=<url>) may lead to, comma-separated; a subdomain of a listed host is allowed.
    # Unset: only the host of partner_landing_url. Any other target falls back to partner_landing_url.
    partner_landing_domains: str | None = None
    click_flush_ms: int = 200  # clicks are written in batches off the request path, at least this often
    click_flush_rows: int = 500  # ... or as soon as this many are waiting
    # A conversion is credited to a click (click_id) or a tracking code only this long after the click;
    # a coupon has no click, so no window.
    attribution_window_days: int = 30


class PayoutSettings(PayoutRailSettings):
    # A batch whose total exceeds this (minor units of any one currency) waits for a person; 0 = always ask.
    payout_approval_above_minor: int = 0
    payout_approval_timeout_seconds: int = 3 * 24 * 3600
    # A payout left `sending` by a crashed worker is recovered after the lease.
    payout_claim_lease_seconds: int = 300
    # A payout whose outcome is still unknown this long after it was first sent is mailed to the team.
    payout_unclear_alert_hours: int = 24


class ComplianceSettings(EnvSettings):
    sanctions_list: str | None = None  # path or URL of an OFAC SDN-format CSV
    sanctions_alt_list: str | None = None  # optional ALT.CSV (aliases), path or URL
    sanctions_address_list: str | None = None  # optional ADD.CSV (countries), path or URL
    compliance_policy: Path | None = None  # default: templates/compliance/policy.yaml
    compliance_fetch_concurrency: int = 10
    compliance_fetch_timeout_seconds: float = 15.0
    compliance_fetch_max_bytes: int = 3_000_000
    compliance_per_domain_delay: float = 1.0
    compliance_respect_robots: bool = True
    # Partners' pages come from the public /apply form: hosts on loopback/private networks are refused at
    # application time and on every fetch. Only tests and benchmarks serving pages on 127.0.0.1 set this.
    compliance_allow_private_addresses: bool = False
    # How long a high-severity finding waits for a person before the policy default applies.
    compliance_approval_timeout_seconds: int = 3 * 24 * 3600


class PortalSettings(EnvSettings):
    """The partner portal: sign-in links, sessions, payout-detail changes."""

    portal_sign_in_link_minutes: int = Field(15, ge=1, le=24 * 60)  # an emailed sign-in link works this long, once
    # Sign-in links asked for per address and per client address (limits' notation, ";" between rules); the
    # counters live where /apply's do (PARTNERFLOW_WEB_RATE_LIMIT_STORAGE).
    portal_sign_in_limit_per_email: str = "3/10 minutes;10/day"
    portal_sign_in_limit_per_ip: str = "10/minute;50/hour"
    portal_session_idle_minutes: int = Field(30, ge=1)  # signed out after this long without a page
    portal_session_absolute_hours: int = Field(12, ge=1)  # ... and this long after signing in, however active
    portal_details_link_minutes: int = Field(60, ge=1)  # the link confirming new payout details works this long
    # Payouts to payout details changed in the portal wait this long after the partner confirmed them.
    portal_payout_cooling_off_hours: int = Field(72, ge=0)

    @field_validator("portal_sign_in_limit_per_email", "portal_sign_in_limit_per_ip")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many  # only where portal settings are read

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as '3/10 minutes;10/day'") from None
        return value


class ReportSettings(EnvSettings):
    """Program reports: the weekly report, the recruitment funnel, charts and exports."""

    reports_export_dir: Path | None = None  # default: var/reports (one folder per reported week)
    reports_currency: str = "USD"  # every amount is converted into it with the rate of the conversion's day
    reports_top_n: int = Field(10, ge=1, le=100)  # top and bottom performers shown in the artifacts
    reports_chart_weeks: int = Field(12, ge=2, le=104)  # weeks of revenue and commission in the chart
    # Where the export folder is served over HTTP, if anywhere: charts then also become image artifacts.
    reports_public_url: str = ""
    # Charts embedded in the Markdown artifact as data: URLs, so the Prefect UI shows them without a server.
    reports_embed_charts: bool = True

    @field_validator("reports_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        code = value.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise ValueError(f"{value!r} is not an ISO 4217 currency code such as USD")
        return code


class GrowthSettings(EnvSettings):
    """Tier promotion and bonuses."""

    # Performance bonuses are looked for in this many complete months back (a month's bonus waits until none
    # of the partner's commissions of that month is still in its lock period).
    growth_bonus_months_back: int = Field(3, ge=1, le=12)
    # How long a tier-change proposal waits for a person; unanswered, nothing changes (the safe default).
    growth_tier_approval_timeout_seconds: int = Field(7 * 24 * 3600, ge=60)
    # Tier changes whose headline commission rate moves by less than this (e.g. "0.02") apply without asking;
    # "0" asks a person about every change. Flat terms have no rate: they are always asked.
    growth_tier_auto_apply_below: str = "0"  # a Decimal as text: never a float
    # The contract's notice period: a demotion applies this many days after it is decided, signed or not.
    growth_notice_days: int = Field(30, ge=0, le=365)

    @field_validator("growth_tier_auto_apply_below", mode="before")
    @classmethod
    def _rate_difference(cls, value: object) -> str:
        from decimal import Decimal, InvalidOperation  # here: the module's import lines are shared

        if isinstance(value, float):
            raise ValueError("growth_tier_auto_apply_below is a decimal string such as \"0.02\", not a float")
        try:
            rate = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a rate difference such as 0.02") from None
        if not rate.is_finite() or not 0 <= rate <= 1:
            raise ValueError(f"{value!r} is not a rate difference between 0 and 1 such as 0.02")
        return str(rate)


class NewsSettings(EnvSettings):
    """News to partners: broadcasts and the weekly performance email."""

    news_batch_size: int = Field(1000, ge=1, le=10_000)  # mails per Prefect task (and per provider request at most)
    # How long a broadcast waits for its approval before it is dropped (nothing sent, the safe default).
    news_approval_timeout_seconds: int = Field(3 * 24 * 3600, ge=60)
    # The weekly performance email for the whole program; each partner can still turn theirs off in the portal.
    news_weekly_email: bool = True


class LimitSettings(EnvSettings):
    """Provider rate limits every worker shares (Prefect global concurrency limits, written to the server
    by `partnerflow up` and `partnerflow deploy`). Embedded providers (outbox, built-in signing, ledger,
    SEPA file) reach no vendor and are never limited. A burst is how many calls may go at once after a
    quiet spell; the rate is how fast permits come back."""

    # Emails a second. SendGrid takes thousands; lower it for a relay with a quota (Amazon SES: 14 by default).
    email_rate_per_second: float = Field(1000.0, gt=0)
    email_rate_burst: int = Field(1000, ge=1)
    # E-sign API calls a second: DocuSign allows 1,000 an hour per account (0.25/s leaves room).
    esign_rate_per_second: float = Field(0.25, gt=0)
    esign_rate_burst: int = Field(10, ge=1)
    # Payout rail API calls a second (Stripe, PayPal): a few a second suits every account.
    payout_rate_per_second: float = Field(4.0, gt=0)
    payout_rate_burst: int = Field(4, ge=1)
    # How long a call waits for a permit before it gives up for now (its work is retried later).
    rate_limit_wait_seconds: float = Field(300.0, gt=0)


def _build(cls: type[T], **overrides) -> T:
    """Read one capability's settings, reducing pydantic's report to one sentence."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        if message.startswith("PARTNERFLOW_"):
            raise ConfigError(message + ".") from None
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"PARTNERFLOW_{field.upper()} is invalid: {message}.") from None


class Settings(EnvSettings):
    """What every stage shares, and each capability's settings by name."""

    var_dir: Path = Path("var")  # local state: database, outbox, documents, logs, generated secret key
    public_base_url: str = "http://127.0.0.1:8765"  # where partners reach the web app (links in mail)
    # Signs links and encrypts secrets at rest; generated into var/ when unset.
    secret_key: SecretStr | None = None
    # Older keys, comma-separated, still accepted (decrypting, verifying links and API keys) while
    # `partnerflow keys rotate` re-encrypts and the links they signed expire; see partnerflow.secrets.
    previous_secret_keys: SecretStr | None = None
    company_name: str = "Acme Analytics Ltd"
    team_email: str = "partners-team@acme.example"

    @field_validator("secret_key", "previous_secret_keys")
    @classmethod
    def _long_enough(cls, value: SecretStr | None, info) -> SecretStr | None:
        if value is None or info.field_name == "secret_key":
            return checked_secret(info.field_name, value, MIN_SECRET_KEY_LENGTH)
        for part in value.get_secret_value().split(","):
            checked_secret(info.field_name, SecretStr(part.strip()), MIN_SECRET_KEY_LENGTH)
        return value

    @functools.cached_property
    def database(self) -> DatabaseSettings:
        return _build(DatabaseSettings)

    @functools.cached_property
    def web(self) -> WebSettings:
        return _build(WebSettings)

    @functools.cached_property
    def mail(self) -> MailSettings:
        mail = _build(MailSettings)
        return mail if mail.outbox_dir else mail.model_copy(update={"outbox_dir": self.var_dir / "outbox"})

    @functools.cached_property
    def esign(self) -> EsignSettings:
        return _build(EsignSettings)

    @functools.cached_property
    def payouts(self) -> PayoutSettings:
        payouts = _build(PayoutSettings)
        # Bank files under var/, and the ledger rail's record in our own database, unless told otherwise.
        return payouts.model_copy(update={
            "sepa_output_dir": payouts.sepa_output_dir or self.var_dir / "sepa",
            "ledger_database_url": payouts.ledger_database_url or self.resolved_database_url,
        })

    @functools.cached_property
    def discovery(self) -> DiscoverySettings:
        return _build(DiscoverySettings)

    @functools.cached_property
    def outreach(self) -> OutreachSettings:
        return _build(OutreachSettings)

    @functools.cached_property
    def contracting(self) -> ContractingSettings:
        return _build(ContractingSettings)

    @functools.cached_property
    def onboarding(self) -> OnboardingSettings:
        return _build(OnboardingSettings)

    @functools.cached_property
    def compliance(self) -> ComplianceSettings:
        return _build(ComplianceSettings)

    @functools.cached_property
    def limits(self) -> LimitSettings:
        return _build(LimitSettings)

    @functools.cached_property
    def portal(self) -> PortalSettings:
        return _build(PortalSettings)

    @functools.cached_property
    def reports(self) -> ReportSettings:
        return _build(ReportSettings)

    @functools.cached_property
    def growth(self) -> GrowthSettings:
        return _build(GrowthSettings)

    @functools.cached_property
    def news(self) -> NewsSettings:
        return _build(NewsSettings)

    @property
    def resolved_database_url(self) -> str:
        url = self.database.database_url or f"sqlite:///{(self.var_dir / 'partnerflow.db').resolve()}"
        # A plain postgresql:// URL means psycopg 3, the driver we install.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def documents_dir(self) -> Path:
        return self.var_dir / "documents"


CAPABILITIES = ("database", "web", "mail", "esign", "payouts", "discovery", "outreach", "contracting",
                "onboarding", "compliance", "limits", "portal", "reports", "growth", "news")


def check_settings(settings: Settings) -> Settings:
    """Read every capability's settings; raise ConfigError naming the first wrong one."""
    for name in CAPABILITIES:
        getattr(settings, name)
    return settings


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return _build(Settings)


def reset_settings() -> None:
    """Re-read the environment (tests); the engine notices a changed database URL by itself."""
    get_settings.cache_clear()
