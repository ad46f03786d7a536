"""wharf_api."""
