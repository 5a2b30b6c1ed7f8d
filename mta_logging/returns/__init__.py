"""Mail that comes back: remote bounces (RFC 3464 DSNs, and plain-text bounces of older MTAs)
and feedback-loop complaints (RFC 5965 ARF reports), parsed and turned into ``rb`` and ``f``
records; what parses as neither is quarantined."""
