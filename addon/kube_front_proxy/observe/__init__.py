"""What operators see: the audit log, metrics, flow labels, request facts, summaries."""
