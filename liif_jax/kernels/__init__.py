"""Hand-written accelerator kernels (Pallas): the fused coordinate-query decoder.

Each kernel has an XLA twin elsewhere (`liif_jax.models.liif`) that defines what it computes and
that the tests compare it with; the renderer picks between them (`liif_jax.render.render`).
"""
