"""Tenants, users, members and robots: their administration without HTTP (service.Administration)."""
