"""Pixel data: masking kernels, pixel rules, CTP rule import, burned-in text, QA."""
