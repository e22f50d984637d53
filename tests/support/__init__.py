"""Helpers shared by test modules (imported as `support.…`, tests/ being on pytest's path)."""
