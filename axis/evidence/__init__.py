"""The evidence log's writer: consumes ``axis.evidence``, appends the events to the log, signs tree heads."""
