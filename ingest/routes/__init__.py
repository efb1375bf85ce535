"""HTTP routes of the ingest service, one router per resource."""
