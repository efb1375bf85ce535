"""Request and response bodies of the read API, one module per area of ``api/routes/``.

Routes import their schemas from here and never import another route module
(tests/unit/api/test_route_imports.py).
"""
