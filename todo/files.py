"""Files the CLI writes (export, seed's tokens): replaced only once complete

A regular file (or a name that does not exist yet) is written beside its target
and renamed over it at the end, so that a failure leaves the old file whole. A
symbolic link is followed: its target is replaced, as `cp` or a shell's `>`
would write it. A device, a pipe, or a name for an open descriptor (/dev/stdout,
/proc/self/fd/N) is written into: replacing it would put a regular file in
place of /dev/null, or swap out the file that the shell opened for `>>`.
"""

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from todo.admin import OperatorError

DESCRIPTOR_FOLDERS = ("/dev/", "/proc/")
MAX_LINKS = 40  # as the kernel's own limit on a path's symbolic links
NAME_MAX = 255  # bytes in a file name, on Linux's file systems


def _written_into(path: str) -> bool:
    """Whether `path` names a device, a pipe or an open descriptor, directly or by
    any symbolic link on the way."""
    current = os.path.abspath(path)
    for _ in range(MAX_LINKS):
        if current.startswith(DESCRIPTOR_FOLDERS):
            return True
        if not os.path.islink(current):
            return os.path.exists(current) and not os.path.isfile(current)
        current = os.path.join(os.path.dirname(current), os.readlink(current))
        current = os.path.abspath(current)
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))


def _target(path: str) -> Path:
    """The regular file that `path` leads to (which may not exist yet)."""
    target = Path(os.path.realpath(path))
    if target.is_symlink():  # in a loop of links, which realpath leaves be
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
    return target


@contextlib.contextmanager
def _reported(path: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise OperatorError(f"cannot write {path}: {error.strerror or error}") from None


def _partial_name(name: str) -> str:
    """The name the file is written under until complete, beside it."""
    partial = f".{name}.partial"
    if len(os.fsencode(partial)) <= NAME_MAX:
        return partial
    # The target's own name may be NAME_MAX long: a short stand-in, the same each run.
    return f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}.partial"


@contextlib.contextmanager
def replaced_when_complete(path: str, private: bool = False) -> Iterator[TextIO]:
    """A UTF-8 text stream whose content becomes `path` when the block completes.

    With `private`, a file written is readable by its owner only (mode 600);
    otherwise it has the default mode. OSError, from opening to renaming, is an
    OperatorError "cannot write PATH: ...".
    """
    with _reported(path):
        if _written_into(path):
            # Appending: opened anew, /dev/stdout would otherwise truncate the file
            # that the shell opened for `>>`.
            with open(path, "a", encoding="utf-8") as output:
                yield output
            return
        target = _target(path)
        partial = target.with_name(_partial_name(target.name))
        mode = 0o600 if private else 0o666  # less the umask, as open() does

        def opener(name, flags):
            return os.open(name, flags, mode)

        try:
            with open(partial, "w", encoding="utf-8", opener=opener) as output:
                if private:  # a .partial left by an earlier run keeps its mode
                    os.fchmod(output.fileno(), 0o600)
                yield output
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise
