"""Logging a request in: credentials, password and token checks, OIDC, session tokens, lock-out."""
