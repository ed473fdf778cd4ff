"""Search: galleries of image embeddings, their indexes, and how galleries are built."""
