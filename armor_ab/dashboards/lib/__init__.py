"""Importable, unit-tested logic behind the dashboard pages (the pages stay thin)."""
