"""The search service: KoCLIP galleries over HTTP, for other programs, notebooks and web pages.

limits     what one request may send and ask for, and how many are worked on or wait at once
gate       bounded concurrency: a fixed pool of workers, a bounded queue, a clear 503 past it
catalog    the galleries a service searches, by name, reopened when their files change
service    the searches themselves (text, image, embedding, row), framework-free
clip_back  clip-retrieval's back-end protocol (/indices-list, /knn-service, /metadata)
app        the ASGI application (FastAPI): both protocols, CORS, size limits, JSON errors, access log

`python -m koclip serve` runs it on its own (koclip.commands.serve); app.py mounts it beside the
Streamlit pages when the operator sets KOCLIP_API.
"""
