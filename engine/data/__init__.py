"""Training data: corpora (`corpus`), the token cache, the book's sliding-window loader (`windows`)."""
