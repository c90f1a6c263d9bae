"""Turn SiameseUIE paths into flat records."""

from __future__ import annotations

from collections.abc import Sequence


def paths_to_records(paths: Sequence[Sequence[dict]], *, leaves_only: bool = True) -> list[dict[str, str]]:
    """``[[{"type": "人物", "span": "谷口清太郎"}, {"type": "任职", "span": "会长"}]]`` ->
    ``[{"人物": "谷口清太郎", "任职": "会长"}]``.

    With ``leaves_only`` (default), a path that another path extends (the intermediate paths that
    ``output_all_prefix`` lists) gives no record of its own.
    """
    keys = [tuple((item["type"], tuple(item["offset"])) for item in path) for path in paths]
    records = []
    for key, path in zip(keys, paths):
        if leaves_only and any(len(other) > len(key) and other[: len(key)] == key for other in keys):
            continue
        records.append({item["type"]: item["span"] for item in path})
    return records
