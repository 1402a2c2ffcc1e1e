"""The pure core of the axis: what a document is, whether it is trustworthy, where it goes, and the
wire vocabulary — no broker, web framework, database or HTTP client imports (import-linter says so)."""
