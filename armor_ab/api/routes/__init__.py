"""HTTP routes, one module per audience: web pages (client), admin, operations."""
