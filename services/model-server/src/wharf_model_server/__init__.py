"""wharf_model_server."""
