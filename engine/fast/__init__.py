"""Speed-ups kept apart from the book's core: decoding copies of the weights, the training allocator."""
