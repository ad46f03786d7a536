"""Modules generated from protos/; see wharf_protocol.codegen."""
