"""wharf_storage_initializer."""
