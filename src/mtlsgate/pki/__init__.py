"""Certificate handling: validation and inspection of uploaded mTLS CA certificates and keys."""
