"""The read side and platform API: mastery views, accounts, roles, content CMS."""
