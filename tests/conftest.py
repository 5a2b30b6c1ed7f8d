"""Session fixtures shared by test modules: the real servers of the ship tests (a 3-node NATS
JetStream cluster, a PostgreSQL cluster), started on first use and stopped by their PIDs."""

from ship_servers import nats_cluster, postgres

__all__ = ["nats_cluster", "postgres"]
