"""What a client connection may cost before and around its login: limits, deadlines, refusals."""
