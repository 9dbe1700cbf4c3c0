// Shared front-end helpers. Page-specific code lives next to its page.
