"""Who made a change, as recorded in the transition log."""

from __future__ import annotations

import os
import socket

from django.contrib.auth.models import AbstractBaseUser


def user_actor(user: AbstractBaseUser) -> str:
    return f"user:{user.get_username()}"


def worker_actor() -> str:
    return f"worker:{socket.gethostname()}:{os.getpid()}"
