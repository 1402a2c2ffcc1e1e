"""Traffic statistics: the store (SQLite or PostgreSQL), queries, Prometheus metrics, the admin app."""
