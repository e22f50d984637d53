"""Helpers shared by tests (import as `support.<module>`: pytest puts tests/ on sys.path)."""
