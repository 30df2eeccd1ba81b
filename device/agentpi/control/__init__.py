"""The control surface: requests, the local socket that serves them, and its client."""
