"""The Streamlit demo's shared parts; navigation.py is its main script, and the pages live in pages/.

models     the sidebar's model picker, and the server's models: loaded once, in the background,
           then compiled for every input shape before visitors need them
inputs     images (examples, uploads, URLs) and texts (labels, queries), checked before use
galleries  the galleries on disk, checked and probed once per version, and visitors' uploads
builds     gallery builds on background threads, shared by every session, retried within bounds
results    search results as cards with an enlarged view
heatmap    Text → Patch's picture: cells tinted by score, with a colour bar
runlog     one line per page run on the server's stderr
settings   what a Space operator sets, through environment variables
api        the search service (koclip.serve) under /api, when the operator sets KOCLIP_API
"""
