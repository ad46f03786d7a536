"""What the router's servers share: readiness with drain on SIGTERM, and serving with timeouts."""
