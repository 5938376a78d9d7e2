"""liif_jax: LIIF (Local Implicit Image Function) in JAX/Flax."""

__version__ = "0.1.0"
