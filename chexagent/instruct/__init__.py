"""CheXinstruct: (images, question, answer) instances built from public datasets' metadata."""
