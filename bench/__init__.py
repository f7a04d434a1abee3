"""Every benchmark of the project, one module each, and their command-line entry points.

- :mod:`bench.clicks`: interactive segmentation (NoC@85/90, mIoU per click, latency);
- :mod:`bench.proposals`: proposal recall / precision and mask mIoU against ground truth;
- :mod:`bench.export`: export throughput of each format;
- :mod:`bench.train`: the whole loop on sample data (train from scratch, COCO mAP) and the
  app's training and prediction overhead;
- :mod:`bench.ui`: click-to-overlay latency in a headless browser;
- :mod:`bench.coco_eval`: the one way predictions are scored against COCO ground truth;
- :mod:`bench.cli`: the ``cmd_bench_*`` functions ``app.py`` calls for ``python app.py bench WHAT``.

The top room of the house: it may import every other room, none imports it. Heavy packages
(torch, ultralytics, gradio, playwright) are imported inside functions, so
importing ``bench.cli`` stays light.
"""
