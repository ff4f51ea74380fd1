"""Targets, chains, retries and deadlines: which vendor serves a request, and what to do
when it fails."""
