"""Triton Python-backend adapters; export copies each into ``<repo>/<model>/1/model.py``."""
