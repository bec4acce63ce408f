"""Quality, domain and safety filters."""
