"""Built-in method plugins, one self-registering module each."""
