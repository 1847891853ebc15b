"""Policies: the PS3.15 tables, the TOML schema, keys and pseudonyms, HIPAA view."""
