"""wharf_model_agent."""
