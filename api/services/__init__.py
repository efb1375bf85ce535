"""Business rules of the API as plain functions; routes only call these."""
