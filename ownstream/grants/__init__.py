"""Who may see what: grants, bearer tokens, and the read scopes the store enforces."""
