"""Mini-Fold: backbone diffusion models (v10 … v14) and the stage-1 ContactClassifier."""
