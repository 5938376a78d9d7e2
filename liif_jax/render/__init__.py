"""Rendering an image at any size in bounded device memory: tiles (`tiling`), a memory budget
(`memory`), the tiled renderer (`render`) and the animated zoom (`zoom`)."""
