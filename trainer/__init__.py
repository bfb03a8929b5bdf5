"""Fine-tune, evaluate, export and publish Tiny Audio models: ``python -m trainer``."""
