"""wharf_controller: InferenceServices on Kubernetes (Standard mode), from wharf-api's plan."""
