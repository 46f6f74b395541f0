"""Video: slideshows with transitions, H.264 MP4 / GIF / WebP encoding, morphs through a diffusion pipeline.

Stands alone: nodes use it, the engine never imports it.
"""
