"""The studio's pages, one module each; every handler takes a :class:`studio.context.Req` and returns HTML."""
