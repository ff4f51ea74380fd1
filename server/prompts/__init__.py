"""Versioned prompt templates: rendering with {{variables}} and their storage."""
