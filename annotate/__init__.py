"""Models and prompts: segmenters (click/box to mask) and proposers. Never imports Gradio."""
