"""Where packages come from: pip's configuration handed to every tool, what the indexes say, and
the target's wheels."""
