"""Modal dialogs: confirmations, the model picker, quitting while training."""
