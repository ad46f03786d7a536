"""wharf_storage."""
