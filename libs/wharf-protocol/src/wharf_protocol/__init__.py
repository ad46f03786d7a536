"""wharf_protocol."""
