"""Tests of the auth domain layer: passwords, scopes, keys, tokens, policy."""
