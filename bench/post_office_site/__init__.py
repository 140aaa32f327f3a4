"""A minimal Django project in which django-post_office, the benchmark's peer, runs."""
