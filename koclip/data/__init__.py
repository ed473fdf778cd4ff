"""Data the models learn from and are shown: generated scenes, the sample photos that ship with
installed packages, datasets."""
