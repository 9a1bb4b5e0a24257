"""One module per resource of the v4 API."""
