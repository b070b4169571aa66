"""Pieces of the per-recipient copy: header fields, MIME structure, text decoration."""
