"""Password hashes for SMTP AUTH users: ``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>``.

The format is Django's, so hashes made by other tools of that family work here; make one with
``mta-logging relay --hash-password`` (reads the password from stdin).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from mta_logging.errors import ConfigError

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 200_000
_FORMAT = "pbkdf2_sha256$<iterations>$<salt>$<base64 hash>, as printed by " \
          "`mta-logging relay --hash-password`"


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS,
                  salt: str | None = None) -> str:
    """A new hash of ``password`` with a random salt."""
    salt = salt if salt is not None else secrets.token_urlsafe(12)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"{ALGORITHM}${iterations}${salt}${base64.b64encode(digest).decode()}"


def check_hash(key: str, value: object) -> str:
    """Validate the shape of a stored hash; ConfigError if it is not one."""
    parts = value.split("$") if isinstance(value, str) else []
    if (len(parts) != 4 or parts[0] != ALGORITHM or not parts[1].isdigit()
            or int(parts[1]) < 1 or not parts[2] or not parts[3]):
        raise ConfigError(key, "<hidden>", f"expected a password hash {_FORMAT}")
    return str(value)


def verify_password(password: str, hashed: str) -> bool:
    """True if ``password`` matches ``hashed`` (compared in constant time)."""
    algorithm, iterations, salt, expected = hashed.split("$")
    if algorithm != ALGORITHM:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(base64.b64encode(digest).decode(), expected)
