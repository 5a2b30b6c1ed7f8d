"""Mail addresses: the one rule for a recipient's domain, shared by the relay and the reports."""

from __future__ import annotations

__all__ = ["domain_of"]


def domain_of(address: str | None) -> str | None:
    """The domain of ``address``: the text after its last ``@``, lower case, without white
    space around it, a closing ``>`` or a trailing dot (``"Bob@Example.COM."`` and
    ``"<bob@example.com>"`` give ``"example.com"``). None when there is no ``@`` or nothing
    after it."""
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2].strip().rstrip(">.").lower() or None
