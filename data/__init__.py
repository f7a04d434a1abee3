"""The project store and file formats: images, classes, annotations, import and export.

Knows nothing about models or Gradio.
"""
