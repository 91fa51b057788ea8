"""The API servers: choosing one, health, timeouts, the trust check, hiding their addresses."""
