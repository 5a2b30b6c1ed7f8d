"""Password hashes for SMTP AUTH users: ``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>``,
and :class:`PasswordChecker`, which checks credentials against them without stalling the relay.

The format is Django's, so hashes made by other tools of that family work here; make one with
``mta-logging relay --hash-password`` (reads the password from stdin).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping

from mta_logging.errors import ConfigError

ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 200_000
HASH_THREADS = 2  # hashes computed at once: clients that guess cannot take every CPU
BACKOFF_FIRST = 0.5  # seconds the answer after a client address's first failure waits
BACKOFF_MAX = 8.0  # ... doubling with each further failure, up to this
BACKOFF_FORGET = 600.0  # seconds without a failure after which an address starts afresh
MAX_TRACKED = 4096  # client addresses remembered; past it the oldest are forgotten
_log = logging.getLogger("mta_logging.relay.auth")
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


class PasswordChecker:
    """Checks AUTH credentials (LOGIN, PLAIN) against ``users`` (name → hash).

    * The hash is computed in a thread (at most :data:`HASH_THREADS` at once), never on the
      event loop, so other clients are served while it runs.
    * An unknown user costs one hash too (of a dummy with the users' largest iteration
      count), so which user names exist cannot be told from the time an answer takes.
    * Each failure from a client address makes the next answer to that address wait longer
      (:data:`BACKOFF_FIRST` seconds, doubling, up to :data:`BACKOFF_MAX`); a success, or
      :data:`BACKOFF_FORGET` seconds without a failure, starts the address afresh.
    * A PLAIN authorization identity (RFC 4616) is accepted only when it is empty or equal to
      the user name: nobody may act as somebody else.
    * A successful (user, password) is remembered for the life of the process (a digest, never
      the password), so clients that log in for every message cost one hash, not one each.
    """

    def __init__(self, users: Mapping[str, str], *,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users = users
        self.sleep = sleep
        self.clock = clock
        # what an unknown user's password is checked against (no users: nothing to hide)
        self._dummy = hash_password(secrets.token_urlsafe(16), iterations=max(
            int(hashed.split("$")[1]) for hashed in users.values())) if users else None
        self._verified: set[bytes] = set()
        self._failures: dict[str, tuple[int, float]] = {}  # address → (failures, last one)
        self._hashing: asyncio.Semaphore | None = None  # made on the running loop

    async def check(self, client_ip: str, login: bytes, password: bytes,
                    authzid: bytes = b"") -> str | None:
        """The user name if the credentials are right; else None, after the backoff."""
        user = login.decode("utf-8", "replace")
        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join((login, password, (hashed or "").encode()))).digest()
        if hashed is not None and key in self._verified and (not authzid or authzid == login):
            self._failures.pop(client_ip, None)
            return user
        against = hashed or self._dummy
        matches = False
        if against is not None:
            if self._hashing is None:
                self._hashing = asyncio.Semaphore(HASH_THREADS)
            async with self._hashing:
                matches = await asyncio.get_running_loop().run_in_executor(
                    None, verify_password, password.decode("utf-8", "replace"), against)
        if matches and hashed is not None and (not authzid or authzid == login):
            self._verified.add(key)
            self._failures.pop(client_ip, None)
            return user
        _log.info("AUTH failed for user %r from %s%s", user, client_ip,
                  " (authorization identity differs)" if matches and authzid else "")
        await self.sleep(self._backoff(client_ip))
        return None

    def _backoff(self, client_ip: str) -> float:
        """Count a failure of ``client_ip``; the seconds its answer waits."""
        now = self.clock()
        count, last = self._failures.pop(client_ip, (0, now))
        if now - last > BACKOFF_FORGET:
            count = 0
        if len(self._failures) >= MAX_TRACKED:
            del self._failures[next(iter(self._failures))]
        self._failures[client_ip] = (count + 1, now)
        return min(BACKOFF_FIRST * 2 ** count, BACKOFF_MAX)
