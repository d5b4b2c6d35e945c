"""Caption: dense captions of kept clips from a vision-language model."""
