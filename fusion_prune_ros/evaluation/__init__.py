"""Scoring with the official nuScenes detection metrics (the devkit's DetectionEval)."""
