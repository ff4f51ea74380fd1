"""Bots and their LLM configurations (exactly one active per bot)."""
