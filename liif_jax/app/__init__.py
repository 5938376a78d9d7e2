"""`python -m liif_jax.app`: upscale and explore a photograph at any scale, in a browser.

`server` is the ASGI app (starlette), `sessions` what it keeps between requests (images, latent
grids per model, renders; all bounded), `views` the explorer's screen-pixel coordinates and
rendering, `static/` the page. Needs the `app` extra: `pip install "liif_jax[app]"`.
"""
