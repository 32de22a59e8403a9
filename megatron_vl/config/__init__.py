"""Typed configs: model presets, parallel layout, stage recipes."""
