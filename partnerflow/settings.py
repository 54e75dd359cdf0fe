"""Settings: environment variables prefixed PARTNERFLOW_ and an optional .env file.

`get_settings()` is cached; tests call `reset_settings()` after changing the
environment. `check_settings()` turns every misconfiguration into one
`ConfigError` sentence naming the setting, so the CLI can print it instead of a
traceback.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMAIL_PROVIDERS = ("outbox", "smtp", "sendgrid")
ESIGN_PROVIDERS = ("builtin", "dropbox_sign", "docusign", "documenso")
PAYOUT_RAILS = ("ledger", "sepa", "stripe", "paypal")


class ConfigError(Exception):
    """A setting is wrong; the message is one sentence naming it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PARTNERFLOW_", env_file=".env", extra="ignore"
    )

    # --- core ---
    var_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite file under var_dir
    public_base_url: str = "http://127.0.0.1:8765"
    web_host: str = "127.0.0.1"
    web_port: int = 8765
    # Used to sign links and encrypt secrets at rest; generated into var/ when unset.
    secret_key: SecretStr | None = None
    company_name: str = "Acme Analytics Ltd"
    team_email: str = "partners-team@acme.example"

    # --- email (sender identity and the postal address every commercial mail carries) ---
    email_provider: str = "outbox"
    outbox_dir: Path | None = None  # default: var_dir/outbox
    sender_name: str = "Acme Partnerships"
    sender_email: str = "partners@acme.example"
    postal_address: str = "Acme Analytics Ltd, 1 Market Street, Springfield, USA"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: str = "none"  # none | starttls | ssl
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    sendgrid_api_key: SecretStr | None = None
    sendgrid_api_host: str = "https://api.sendgrid.com"
    sendgrid_webhook_public_key: str | None = None
    sendgrid_timeout_seconds: float = 10.0

    # --- recruitment (issue 3) ---
    daily_send_cap: int = 500
    # Outreach (A2): local business hours [start, end) on weekdays, when the recipient's timezone is known.
    outreach_business_hours_start: int = 9
    outreach_business_hours_end: int = 17
    outreach_batch_size: int = 1000  # messages per Prefect task (and per SendGrid request at most)
    # A message whose send timed out stays unconfirmed this long waiting for SendGrid's events;
    # after that it is marked failed (never re-sent blindly) and the sequence moves on.
    outreach_reconcile_after_seconds: int = 24 * 3600
    sendgrid_webhook_max_age_seconds: int = 600  # signed timestamp window for the event webhook
    sendgrid_max_retries: int = 4
    sendgrid_inbound_token: SecretStr | None = None  # when set, inbound parse posts must carry ?token=
    # Discovery (A1): how candidates' own pages are fetched, and the scoring policy.
    discovery_fetch_concurrency: int = 10
    discovery_fetch_delay_seconds: float = 1.0  # between two requests to the same host
    discovery_fetch_timeout_seconds: float = 10.0
    discovery_fetch_max_bytes: int = 2_000_000
    discovery_respect_robots: bool = True
    # Candidate URLs come from third-party lists: refuse hosts on loopback/private networks unless allowed.
    discovery_allow_private_addresses: bool = False
    discovery_enrich_chunk_size: int = 100  # prospects per Prefect task
    discovery_scoring_policy: Path | None = None  # default: templates/discovery/scoring_policy.yaml

    # --- contracting & onboarding (issue 4) ---
    esign_provider: str = "builtin"
    dropbox_sign_api_key: SecretStr | None = None
    dropbox_sign_api_host: str = "https://api.hellosign.com"
    docusign_access_token: SecretStr | None = None
    docusign_account_id: str | None = None
    docusign_api_host: str = "https://demo.docusign.net/restapi"
    docusign_connect_hmac_key: SecretStr | None = None
    approval_timeout_seconds: int = 7 * 24 * 3600
    # Contracting (B1): approval policy YAML (default: the embedded templates/contracting/approval_policy.yaml),
    # onboarding form link lifetime, activation nudge/dormant thresholds (days without a click/conversion).
    approval_policy_path: Path | None = None
    onboarding_link_days: int = 30
    activation_nudge_days: int = 14
    activation_dormant_days: int = 60
    partner_landing_url: str = "https://acme.example/"  # where /r/{tracking_code} redirects (with ?ref=code)
    # Countersignature (builtin signing only): when set and the approval policy's `countersign` rule matches,
    # the company signer signs after the partner, and only then is the contract signed.
    company_signer_name: str = ""
    company_signer_email: str = ""
    # SaaS e-sign (B2): HTTP timeout, callback age window, reconcile wait, reminder/expiry sweeps.
    esign_timeout_seconds: float = 20.0
    dropbox_sign_test_mode: bool = False  # test_mode=1: requests are not legally binding nor billed
    # Providers retry callbacks with the original timestamp, so the window spans their retry period.
    esign_webhook_max_age_seconds: int = 24 * 3600
    # After an ambiguous send (timeout), how long a search by our reference may lag before we resend.
    esign_reconcile_after_seconds: int = 15 * 60
    signing_reminder_days: int = 3  # remind every N days while unsigned
    signing_max_reminders: int = 3
    signing_expiry_days: int = 14  # expire (and void at the provider) after M days
    # Ask SaaS providers directly about requests still unsigned this long after sending (lost callbacks).
    esign_poll_after_hours: int = 24
    documenso_api_key: SecretStr | None = None
    documenso_api_host: str = "https://app.documenso.com"
    documenso_webhook_secret: SecretStr | None = None  # sent back as-is in X-Documenso-Secret

    # --- commissions & payouts (issue 5) ---
    payout_rail: str = "ledger"
    stripe_api_key: SecretStr | None = None
    stripe_api_host: str = "https://api.stripe.com"
    stripe_webhook_secret: SecretStr | None = None
    paypal_client_id: str | None = None
    paypal_client_secret: SecretStr | None = None
    paypal_api_host: str = "https://api-m.paypal.com"
    sepa_debtor_name: str = "Acme Analytics Ltd"
    sepa_debtor_iban: str | None = None
    sepa_debtor_bic: str | None = None
    # SaaS/bank rails (C2): pain.001 files folder (default var_dir/sepa), HTTP timeout, webhook window.
    sepa_output_dir: Path | None = None
    payout_http_timeout_seconds: float = 20.0
    stripe_webhook_tolerance_seconds: int = 300
    # Payout batches (C1): a batch whose total exceeds this (in minor units of any one currency) waits for a
    # person's approval; 0 = always ask. A payout left `sending` by a crashed worker is recovered after the lease.
    payout_approval_above_minor: int = 0
    payout_approval_timeout_seconds: int = 3 * 24 * 3600
    payout_claim_lease_seconds: int = 300

    # --- compliance (issue 6) ---
    sanctions_list: str | None = None  # path or URL of an OFAC SDN-format CSV
    sanctions_alt_list: str | None = None  # optional ALT.CSV (aliases), path or URL
    sanctions_address_list: str | None = None  # optional ADD.CSV (countries), path or URL
    compliance_policy: Path | None = None  # default: templates/compliance/policy.yaml
    compliance_fetch_concurrency: int = 10
    compliance_fetch_timeout_seconds: float = 15.0
    compliance_fetch_max_bytes: int = 3_000_000
    compliance_per_domain_delay: float = 1.0
    compliance_respect_robots: bool = True
    # How long a high-severity finding waits for a person before the policy default applies.
    compliance_approval_timeout_seconds: int = 3 * 24 * 3600

    @field_validator("email_provider", "esign_provider", "payout_rail")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def resolved_database_url(self) -> str:
        url = self.database_url or f"sqlite:///{(self.var_dir / 'partnerflow.db').resolve()}"
        # A plain postgresql:// URL means psycopg 3, the driver we install.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.var_dir / "outbox"

    @property
    def documents_dir(self) -> Path:
        return self.var_dir / "documents"


def _require(settings: Settings, provider_setting: str, value: str, needs: dict[str, list[str]]) -> None:
    for field in needs.get(value, []):
        if not getattr(settings, field):
            raise ConfigError(
                f"PARTNERFLOW_{provider_setting.upper()}={value} needs PARTNERFLOW_{field.upper()} to be set."
            )


def check_settings(settings: Settings) -> Settings:
    """Raise ConfigError with one sentence naming the first wrong setting."""
    choices = {
        "email_provider": EMAIL_PROVIDERS,
        "esign_provider": ESIGN_PROVIDERS,
        "payout_rail": PAYOUT_RAILS,
    }
    for name, allowed in choices.items():
        value = getattr(settings, name)
        if value not in allowed:
            raise ConfigError(
                f"PARTNERFLOW_{name.upper()}={value!r} is not a known choice; use one of: {', '.join(allowed)}."
            )
    _require(settings, "email_provider", settings.email_provider, {"sendgrid": ["sendgrid_api_key"]})
    _require(
        settings,
        "esign_provider",
        settings.esign_provider,
        {
            "dropbox_sign": ["dropbox_sign_api_key"],
            "docusign": ["docusign_access_token", "docusign_account_id", "docusign_connect_hmac_key"],
            "documenso": ["documenso_api_key", "documenso_webhook_secret"],
        },
    )
    _require(
        settings,
        "payout_rail",
        settings.payout_rail,
        {
            "stripe": ["stripe_api_key"],
            "paypal": ["paypal_client_id", "paypal_client_secret"],
            "sepa": ["sepa_debtor_iban", "sepa_debtor_bic"],
        },
    )
    if settings.smtp_security not in ("none", "starttls", "ssl"):
        raise ConfigError(
            f"PARTNERFLOW_SMTP_SECURITY={settings.smtp_security!r} is not a known choice; use none, starttls or ssl."
        )
    return settings


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError: reduce to one sentence
        errors = getattr(exc, "errors", lambda: [])()
        if errors:
            first = errors[0]
            field = ".".join(str(p) for p in first.get("loc", ()))
            raise ConfigError(f"PARTNERFLOW_{field.upper()} is invalid: {first.get('msg')}.") from None
        raise ConfigError(str(exc)) from None


def reset_settings() -> None:
    """Re-read the environment (tests); the engine is rebuilt only if the database URL changed."""
    before = get_settings().resolved_database_url if get_settings.cache_info().currsize else None
    get_settings.cache_clear()
    from partnerflow.models import engine

    if before != get_settings().resolved_database_url:
        engine.reset_engine()
