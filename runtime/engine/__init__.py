"""The run session's machinery: everything between a validated plan and its answers.

Pre-flight checks, the Ray the actors start on, the actors themselves, step compilation
and submission, the scheduler that accounts for every problem, metrics, and the run's
results on disk. Calls go one way: session -> scheduler -> steps -> actors.
"""
