"""Built-in method and loss plugins, one self-registering module each."""
