"""wharf_e2e."""
