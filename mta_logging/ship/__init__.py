"""Moving records off the host: tailing accounting files with checkpoints into NATS JetStream
and webhooks (``mta-logging ship``), and from JetStream into PostgreSQL (``mta-logging
ingest``), with the report computed there (``mta-logging report --from postgresql://...``).

The modules import their client libraries (nats-py, httpx, psycopg: the ``ship`` extra) only
where they are used.
"""
