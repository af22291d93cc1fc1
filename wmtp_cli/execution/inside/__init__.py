"""Code that runs inside the sandbox (stdlib only): the server, the judge, the program's side, the plain-data
codec. ``server.py`` is imported (so its cached bytecode is used) with this folder as the import path; only
``plain`` and ``names``, which import nothing of their own, are also imported by the executor."""
