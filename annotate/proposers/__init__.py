"""Proposers: an image in, boxes (optionally masks) with classes and scores out.

``create_proposer`` in :mod:`annotate.proposers.registry` builds them by registry name
(``anomaly``, ``yoloworld-v2-s``..``-x``, ``run:ID``); nothing heavy is imported here.
"""
