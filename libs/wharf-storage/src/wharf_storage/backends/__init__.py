"""One adapter per store: the only modules that import the stores' client libraries."""
