"""The PySide6 + pyqtgraph front end: views, Qt models over core's data, and workers for core's jobs."""
