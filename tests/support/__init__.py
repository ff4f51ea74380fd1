"""Test helpers that run real parts (e.g. a throwaway redis-server)."""
