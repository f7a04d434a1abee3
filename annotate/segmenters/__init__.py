"""Click and box to mask: every segmenter behind one interface (see ``base.py``).

Import ``annotate.segmenters.registry`` for names, defaults and construction; it is lazy (no
torch import until a SAM backend is built).
"""
