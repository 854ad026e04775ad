"""One module per DVC stage: read params.yaml, call the rewind library, write declared outputs.

Stages know paths and params; they hold no training or pruning logic of their own.
"""
