"""Built-in loss plugins, one self-registering module each."""
