"""The chaos run: the service under SIGKILLs, database and SMTP restarts, 4xx replies."""
