"""Ultralytics YOLO training jobs, the run registry and prediction.

Import the submodules (``train.jobs``, ``train.runs``, ``train.predict``); this
package import stays light so ``python app.py --help`` loads no model code.
"""
