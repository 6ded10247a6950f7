"""Results: records, verdicts, splats and summaries; plain data, no pytest and no paramiko."""
