"""Vendor adapters: one module per vendor, the same shape each (see ``base.py``)."""
