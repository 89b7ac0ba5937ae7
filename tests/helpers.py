"""Helpers shared by the test modules (pytest puts tests/ on sys.path)."""
import threading


def in_fresh_thread(fn, *args, **kwargs):
    """Run fn in a new thread, hence on a new, empty tape (other tests, or
    pytest's saved tracebacks, may keep recorded Variables of the main thread
    alive); return its result or re-raise its exception here."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=target, name=f"fresh-{fn.__name__}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
