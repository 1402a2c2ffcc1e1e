"""The admin app: statistics API, Prometheus metrics, the live dashboard and the operator's actions (FastAPI)."""
