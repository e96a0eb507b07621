"""AWS Lambda support: the ``with_lambda_profiler`` decorator (``decorator.py``), the layer handler
(``lambda_handler.py``) and its exec wrapper script ``codeguru_profiler_lambda_exec``."""
