"""Secrets at rest: encryption for payout details, hashes for API keys and tokens,
masking for anything shown in logs, UI or artifacts.

Keys rotate. The installation has a list of keys, newest first: PARTNERFLOW_SECRET_KEY then
PARTNERFLOW_PREVIOUS_SECRET_KEYS, or, when those are unset, the lines of var/secret.key.
The newest key encrypts, signs and hashes; every listed key still decrypts and verifies, so
links and API keys made under an older key keep working while it is listed. Each key has an id
(a fingerprint, safe to show); an encrypted value starts with the id of the key that encrypted it,
so `partnerflow keys rotate` finds the values still under an older key and re-encrypts them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets as _stdlib_secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from partnerflow.settings import MIN_SECRET_KEY_LENGTH, ConfigError, get_settings

KEY_FILE_NAME = "secret.key"


@dataclass(frozen=True)
class Key:
    id: str  # a fingerprint of the key, safe to log and to store next to what it encrypted
    secret: bytes = b""

    def __repr__(self) -> str:  # never the secret itself
        return f"Key({self.id})"


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"partnerflow-key-id:" + secret).hexdigest()[:8]


def _key(secret: str) -> Key:
    raw = secret.strip().encode()
    return Key(id=key_id(raw), secret=raw)


def keys() -> list[Key]:
    """Every listed key, newest first (the first one encrypts, signs and hashes)."""
    settings = get_settings()
    if settings.secret_key is not None:
        older = settings.previous_secret_keys.get_secret_value() if settings.previous_secret_keys else ""
        listed = [settings.secret_key.get_secret_value(), *older.split(",")]
    else:
        listed = read_key_file(key_file())
    found: list[Key] = []
    for value in listed:
        if value.strip() and (key := _key(value)).id not in {k.id for k in found}:
            found.append(key)
    return found


def key_file() -> Path:
    return get_settings().var_dir / KEY_FILE_NAME


def read_key_file(path: Path) -> list[str]:
    """The key file's keys, newest first; the file is created (0600 from the start) when missing."""
    if not path.exists():
        write_key_file(path, [_stdlib_secrets.token_urlsafe(48)], replace=False)
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise ConfigError(f"{path} holds no key; remove the file to have a new one generated.")
    for line in lines:
        if len(line) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(f"{path} holds a key shorter than {MIN_SECRET_KEY_LENGTH} characters.")
    return lines


def write_key_file(path: Path, lines: list[str], *, replace: bool) -> None:
    """Write the keys so that no other user can ever read them: the file is created with mode 0600
    (never chmod-ed afterwards), and replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".new") if replace else path
    if replace:
        target.unlink(missing_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if replace:
            raise ConfigError(f"{target} exists: another key change is under way; try again.") from None
        return  # another process created the key file first: its key is the one
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
        out.flush()
        os.fsync(out.fileno())
    if replace:
        os.replace(target, path)


def add_key_to_file() -> Key:
    """Generate a new newest key in var/secret.key (older keys stay listed until retired)."""
    if get_settings().secret_key is not None:
        raise ConfigError("PARTNERFLOW_SECRET_KEY is set, so keys come from the environment: set a new "
                          "PARTNERFLOW_SECRET_KEY and list the old one in PARTNERFLOW_PREVIOUS_SECRET_KEYS.")
    path = key_file()
    existing = read_key_file(path)
    new = _stdlib_secrets.token_urlsafe(48)
    write_key_file(path, [new, *existing], replace=True)
    return _key(new)


def retire_key_from_file(retired_id: str) -> None:
    """Drop an older key from var/secret.key (the newest key cannot be retired)."""
    path = key_file()
    existing = read_key_file(path)
    remaining = [value for value in existing if _key(value).id != retired_id]
    if len(remaining) == len(existing):
        raise ConfigError(f"no key with id {retired_id} is listed in {path}.")
    if _key(existing[0]).id == retired_id:
        raise ConfigError(f"key {retired_id} is the newest key; add a new key before retiring it.")
    write_key_file(path, remaining, replace=True)


def master_key() -> bytes:
    """The newest key: what signs and hashes from now on."""
    return keys()[0].secret


def _derived(purpose: str, key: Key | None = None) -> bytes:
    return hmac.new((key or keys()[0]).secret, purpose.encode(), hashlib.sha256).digest()


def _fernet(key: Key) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derived("encrypt", key)))


def encrypt(plaintext: str) -> str:
    """'<key id>:<Fernet token>' under the newest key."""
    key = keys()[0]
    return f"{key.id}:{_fernet(key).encrypt(plaintext.encode()).decode()}"


def encrypted_key_id(token: str) -> str | None:
    """The id of the key a value was encrypted with (None: written before keys had ids)."""
    head, sep, _ = token.partition(":")
    return head if sep else None


def decrypt(token: str) -> str:
    """Decrypt with whichever listed key encrypted the value; InvalidToken when none is listed any more."""
    listed = keys()
    kid = encrypted_key_id(token)
    if kid is None:  # from before key ids: try every listed key
        return MultiFernet([_fernet(k) for k in listed]).decrypt(token.encode()).decode()
    key = next((k for k in listed if k.id == kid), None)
    if key is None:
        raise InvalidToken(f"encrypted with key {kid}, which is no longer listed")
    return _fernet(key).decrypt(token.partition(":")[2].encode()).decode()


def needs_reencryption(token: str) -> bool:
    return encrypted_key_id(token) != keys()[0].id


def reencrypt(token: str) -> str:
    """The same plaintext under the newest key."""
    return encrypt(decrypt(token))


def new_token(nbytes: int = 32) -> str:
    """An unguessable URL-safe token (signing links, API keys)."""
    return _stdlib_secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    """Keyed hash for storing tokens and API keys: the database never holds them in clear (newest key)."""
    return hmac.new(_derived("token"), token.encode(), hashlib.sha256).hexdigest()


def token_hashes(token: str) -> list[str]:
    """The token's keyed hash under every listed key, newest first: look a stored hash up with
    `column.in_(token_hashes(token))`, so tokens and API keys issued under an older key still match."""
    return [hmac.new(_derived("token", key), token.encode(), hashlib.sha256).hexdigest() for key in keys()]


def pseudonym(value: str, purpose: str) -> str:
    """Keyed hash of personal data we only compare, never read back (a visitor's IP, a customer's email):
    its own derived key per purpose, apart from the encryption and token keys."""
    return hmac.new(_derived(f"pseudonym:{purpose}"), value.encode(), hashlib.sha256).hexdigest()


def pseudonyms(value: str, purpose: str) -> list[str]:
    """The pseudonym under every listed key, newest first: compare with these so rows hashed under an
    older key still match."""
    return [hmac.new(_derived(f"pseudonym:{purpose}", key), value.encode(), hashlib.sha256).hexdigest()
            for key in keys()]


def mask(value: str | None, keep: int = 4) -> str:
    """'DE89370400440532013000' -> '••••••••••••••••••3000'."""
    if not value:
        return ""
    visible = value[-keep:] if len(value) > keep else ""
    return "•" * (len(value) - len(visible)) + visible
