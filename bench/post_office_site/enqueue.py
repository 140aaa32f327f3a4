"""``python -m bench.post_office_site.enqueue N``: an empty post_office queue, then N e-mails.

They are queued the way post_office's users queue many: ``post_office.mail.send_many`` (one
``bulk_create``, committed when it returns), each the benchmark's message shape.
"""

from __future__ import annotations

import os
import sys

import django  # type: ignore[import-untyped]

from bench.database import BODY, SENDER, subject

__all__ = ["main"]


def main(count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.post_office_site.settings")
    django.setup()
    from django.db import connection  # type: ignore[import-untyped]  # noqa: PLC0415
    from post_office import mail  # type: ignore[import-untyped]  # noqa: PLC0415

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE post_office_email CASCADE")
    mail.send_many(
        [
            {
                "sender": f"{SENDER.display_name} <{SENDER.address}>",
                "recipients": [f"r{number}@example.com"],
                "subject": subject(number),
                "message": BODY,
            }
            for number in range(count)
        ]
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
