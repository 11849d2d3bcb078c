"""Runs as Ray jobs: submit, status, logs and stop through Ray's Job Submission SDK."""
