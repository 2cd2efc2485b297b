"""``dynacron ui``: the web dashboard (``pip install 'dynacron[ui]'``)."""
