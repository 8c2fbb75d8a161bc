"""tinylm: a character-level language model served OpenAI-style (an example model server)."""
