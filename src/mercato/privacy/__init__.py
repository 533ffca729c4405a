"""Personal data protection shared by every domain: field encryption, blind indexes."""
