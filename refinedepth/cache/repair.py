"""Repairing what a killed writer leaves behind: the "open for write" flags in the HDF5
superblock (what ``h5clear -s --increment`` does), with the superblock's lookup3 checksum.

An SWMR writer's ordered flushes keep the file consistent at every instant, but HDF5 refuses to
reopen a file for writing while its superblock says a writer has it open. :func:`recover_interrupted`
clears that in place, after checking the file is not truncated and not held by a live process.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import CacheError


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum HDF5 puts on superblock v2/v3."""
    m = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & m

    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & m
    i = 0
    while n > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & m
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & m
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & m
        a = (a - c) & m; a ^= rot(c, 4); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= rot(a, 6); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= rot(b, 8); b = (b + a) & m  # noqa: E702
        a = (a - c) & m; a ^= rot(c, 16); c = (c + b) & m  # noqa: E702
        b = (b - a) & m; b ^= rot(a, 19); a = (a + c) & m  # noqa: E702
        c = (c - b) & m; c ^= rot(b, 4); b = (b + a) & m  # noqa: E702
        n -= 12
        i += 12
    if n == 0:
        return c
    tail = bytes(data[i:]) + bytes(12 - n)
    a = (a + int.from_bytes(tail[0:4], "little")) & m
    b = (b + int.from_bytes(tail[4:8], "little")) & m
    c = (c + int.from_bytes(tail[8:12], "little")) & m
    c ^= b; c = (c - rot(b, 14)) & m  # noqa: E702
    a ^= c; a = (a - rot(c, 11)) & m  # noqa: E702
    b ^= a; b = (b - rot(a, 25)) & m  # noqa: E702
    c ^= b; c = (c - rot(b, 16)) & m  # noqa: E702
    a ^= c; a = (a - rot(c, 4)) & m  # noqa: E702
    b ^= a; b = (b - rot(a, 14)) & m  # noqa: E702
    c ^= b; c = (c - rot(b, 24)) & m  # noqa: E702
    return c


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def superblock_offset(fh) -> int | None:
    """Offset of the HDF5 superblock (0, 512, 1024, ...), or None if there is none."""
    size = os.fstat(fh.fileno()).st_size
    offset = 0
    while offset + 8 <= size:
        fh.seek(offset)
        if fh.read(8) == _HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def recover_interrupted(path: str | os.PathLike) -> bool:
    """Clear the "open for write" flags a killed writer leaves in the superblock (``h5clear -s``).

    Also raises the end-of-allocation address to the file's size (``h5clear --increment``), so new
    space is allocated after anything the killed writer may have placed there. Returns True if the
    file was changed. Refuses (:class:`CacheError`) a truncated file or one a live process holds.
    """
    import fcntl

    path = Path(path)
    with open(path, "r+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise lock_error(path, exc) from None
        try:
            base = superblock_offset(fh)
            if base is None:
                return False
            fh.seek(base)
            head = fh.read(12)
            version, size_of_offsets = head[8], head[9]
            if version < 3:
                return False
            end = 12 + 4 * size_of_offsets
            fh.seek(base)
            block = bytearray(fh.read(end + 4))
            stored = int.from_bytes(block[end : end + 4], "little")
            if lookup3(bytes(block[:end])) != stored:
                raise CacheError(f"{path}: the HDF5 superblock checksum does not match; the file is corrupt")
            flags = block[11]
            eoa_at = 12 + 2 * size_of_offsets
            eoa = int.from_bytes(block[eoa_at : eoa_at + size_of_offsets], "little")
            file_size = os.fstat(fh.fileno()).st_size - base
            if file_size < eoa:
                raise CacheError(truncated_message(path, file_size + base, eoa + base))
            if flags == 0:
                return False
            block[11] = 0
            block[eoa_at : eoa_at + size_of_offsets] = max(eoa, file_size).to_bytes(size_of_offsets, "little")
            block[end : end + 4] = lookup3(bytes(block[:end])).to_bytes(4, "little")
            fh.seek(base)
            fh.write(bytes(block))
            fh.flush()
            os.fsync(fh.fileno())
            return True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def truncated_message(path: Path, size: int, expected: int) -> str:
    return (
        f"{path} is truncated ({size} bytes on disk, the HDF5 header expects at least {expected}); "
        "the copy or download was cut short: recreate it with 'refinedepth cache --overwrite'"
    )


def lock_error(path: Path, exc: OSError) -> CacheError:
    """The one-line error for a failed ``flock`` on ``path``."""
    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
        return CacheError(f"{path} is open for writing in another process; wait for it to finish")
    return CacheError(
        f"{path}: cannot lock the file ({exc.strerror}); the filesystem may not support locks: "
        "write the cache on a local disk"
    )


__all__ = ["lookup3", "superblock_offset", "recover_interrupted", "truncated_message", "lock_error"]
