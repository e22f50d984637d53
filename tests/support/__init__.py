"""Helpers shared by test modules (import as `support.<module>`: pytest puts tests/ on sys.path)."""
