"""The Streamlit demo's shared parts; the pages themselves live in pages/.

  models   the sidebar's model picker, and the server's models: loaded once, in the background,
           then compiled for every input shape before visitors need them
  inputs   images (examples, uploads, URLs) and texts (labels, queries), checked before use
  results  result cards with an enlarged view, the patch heat map, and shareable links
"""
