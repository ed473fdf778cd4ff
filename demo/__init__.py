"""The Streamlit demo's shared parts; navigation.py is its main script, and the pages live in pages/.

  models     the sidebar's model picker, and the server's models: loaded once, in the background,
             then compiled for every input shape before visitors need them
  inputs     images (examples, uploads, URLs) and texts (labels, queries), checked before use
  galleries  the galleries on disk, opened once per server, and the builds that make new ones
  results    search results as cards with an enlarged view
"""

