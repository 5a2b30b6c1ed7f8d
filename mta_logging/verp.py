"""VERP return paths: the job and the recipient a bounce is about, in its envelope recipient.

With VERP (variable envelope return path) each recipient of a message gets its own ``MAIL
FROM``, so that a bounce, which goes back to that address, says which message and recipient it
is about even when the bounce itself is unreadable. The form is::

    <prefix>+<job>-<index>-<mac>@<domain>

``job`` is the job id (the relay's queue id), UTF-8, in base32 (RFC 4648) lower case without
padding, so that it survives MTAs that change the case of local parts; ``index`` the
recipient's position in the message's recipient list, in decimal; ``mac`` the first 8 bytes of
HMAC-SHA256 under the configured secret of ``<job>-<index>`` (as written in the address), in
base32 lower case without padding (13 characters). Nobody without the secret can make an
address that decodes; :func:`decode` compares the mac in constant time. A local part is at most
64 octets (RFC 5321 §4.5.3.1.1): with the prefix ``bounces`` a job id of up to 21 bytes fits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from mta_logging.errors import ConfigError

MAC_BYTES = 8
MAX_LOCAL_PART = 64


@dataclass(frozen=True, slots=True)
class VerpToken:
    """What a VERP address holds: the job id and the recipient's index in the message."""

    job_id: str
    index: int


@dataclass(frozen=True, slots=True)
class Verp:
    """Encodes and decodes VERP addresses under ``domain`` with the local-part ``prefix``.

    ``secret`` (bytes, at least 16) keys the mac; ``domain`` is compared in any case."""

    secret: bytes
    domain: str
    prefix: str = "bounces"

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ConfigError("verp.secret", "(hidden)", "expected at least 16 bytes")
        if not self.prefix or "+" in self.prefix or "@" in self.prefix:
            raise ConfigError("verp.prefix", self.prefix,
                              "expected a local part without '+' or '@'")

    def encode(self, job_id: str, index: int) -> str:
        """The return path of recipient ``index`` of job ``job_id``.

        Raises ConfigError when the job id is too long for a local part of 64 octets."""
        body = f"{_b32(job_id.encode('utf-8'))}-{index}"
        local = f"{self.prefix}+{body}-{self._mac(body)}"
        if len(local.encode("utf-8")) > MAX_LOCAL_PART:
            raise ConfigError("job id", job_id, f"too long for a VERP local part of at most "
                              f"{MAX_LOCAL_PART} octets")
        return f"{local}@{self.domain}"

    def decode(self, address: str) -> VerpToken | None:
        """The token of ``address`` (``<...>`` and case of the domain ignored); None when it is
        not a VERP address of this domain and prefix or its mac does not verify."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at or domain.lower() != self.domain.lower():
            return None
        prefix, plus, token = local.partition("+")
        if not plus or prefix.lower() != self.prefix.lower():
            return None
        body, dash, mac = token.lower().rpartition("-")
        encoded_job, dash2, index = body.partition("-")
        if not dash or not dash2 or not index.isdigit() or not index.isascii():
            return None
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(body).encode()):
            return None
        try:
            job_id = base64.b32decode(_padded(encoded_job.upper())).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        return VerpToken(job_id, int(index))

    def is_ours(self, address: str) -> bool:
        """Whether ``address`` is under this VERP domain and prefix (valid or not)."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        return bool(at) and domain.lower() == self.domain.lower() and (
            local.lower().startswith(self.prefix.lower() + "+"))

    def _mac(self, body: str) -> str:
        digest = hmac.new(self.secret, body.encode("utf-8"), hashlib.sha256).digest()
        return _b32(digest[:MAC_BYTES])


def read_secret(path: str | os.PathLike[str], key: str = "verp.secret_file") -> bytes:
    """The secret in file ``path``: its bytes without surrounding white space (a trailing
    newline is not part of it). ConfigError naming ``key`` when it cannot be read."""
    try:
        return Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(key, os.fspath(path), f"cannot be read ({exc.strerror})") from None


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 8)
