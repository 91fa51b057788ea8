"""Telling the API server who the user is: front-proxy headers, or impersonation."""
