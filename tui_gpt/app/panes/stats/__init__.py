"""The Stats pane: loss and perplexity plots of one or more runs."""
