"""Return on investment of shipping the ARMOR variant, with its uncertainty."""
