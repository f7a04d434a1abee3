"""What every layer shares about models: the weights folder, device choice, downloads and the
status rows of ``python app.py models``. Imports only ``data`` (its errors); nothing heavy."""
