"""The national traffic simulator: scenarios, the pure traffic plan, the HTTP driver and the report."""
