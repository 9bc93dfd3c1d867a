"""ptk.models: torch building blocks, the model families, their losses and the diffusion sampler."""
