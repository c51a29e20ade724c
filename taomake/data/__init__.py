"""Data sources: S3 and local staging, archives, dataset checks."""
