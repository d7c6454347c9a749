"""A minimal stand-in for the safetensors package (Debian 12 has none, and CI has no PyPI): enough of
safetensors.torch.load_file for scripts/pytorch/check.py to run the README's lines unchanged."""
