"""Image helpers that need no model (Pillow): opening safely, geometric ops, grids, captions, saving."""
