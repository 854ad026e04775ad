"""Models and datasets of your own: modules here are named in params.yaml by import path."""
