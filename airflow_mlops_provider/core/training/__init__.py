"""Distributed training: torchrun launcher (parent side), DDP worker, checkpoints, built-in trainer.

Importing this package is cheap; torch is imported by the modules that need it.
"""
