"""The grader's side inside the kernel: run the instructor's checks so the submission cannot
change their result beforehand.

The grader (minilm/course/grader.py) sends three kinds of cells to a fresh kernel:

1. `begin()`, before any submission code: imports numpy, math, json, hmac and every minilm
   module, and takes a snapshot of their attributes (functions' code included), of builtins,
   of sys.stdout / sys.stderr and of IPython's hooks.
2. The submission's own cells, unchanged.
3. For each check cell of the instructor's reference notebook, `run(key, label, source, ns)`:
   - undoes what the submission changed since the snapshot (a rebound `numpy.allclose`, a
     patched `check.__exit__`, a replaced `print` or `sys.stdout`, trace and profile
     functions, IPython hooks it registered) and reports each change as tampering;
   - runs the reference's check source in the notebook's namespace with the real `check`
     bound to the name `check` (whatever the submission bound there);
   - records each `with check(...)` of that source (its line, pass or fail, the failure
     message and what the check printed), and prints one line
     `MINILM-RESULT <hmac> <json>`, signed with `key`, a secret that appears only in this
     cell. The grader reads only that line, only from this cell, and only if the signature
     verifies: lines the submission printed, whatever they say, are never read.

What this cannot stop (see the README's threat model): code that runs *during* a check (the
student's function, called by the check) runs in the same process as this harness and can
read its frames; code that hooks IPython's execution can read a check cell's source before
it runs. The grader flags submissions that reach for such tools (`scan_source` in
grader.py); isolating each submission is the course's job.
"""
import hashlib
import hmac
import importlib
import json
import pkgutil
import sys
import threading
import types

from . import checks as _checks

RESULT_PREFIX = "MINILM-RESULT "
_PROTECTED = ["builtins", "math", "json", "hmac", "hashlib", "numpy", "numpy.linalg", "numpy.random",
              "numpy.testing", "minilm"]
_SKIP = ("minilm.__main__", "minilm.bench.torch_ref", "minilm.course.__main__")
_snapshot = None
# What the kernel itself rebinds for every cell: not the submission's doing.
_KERNEL_MANAGED = {("builtins", "input"), ("builtins", "raw_input"), ("builtins", "getpass"),
                   ("builtins", "display"), ("builtins", "get_ipython")}


def _protected_modules():
    for name in _PROTECTED:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    import minilm
    for info in pkgutil.walk_packages(minilm.__path__, "minilm."):
        if info.name in _SKIP or info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:                                  # an optional extra (cupy, mpi4py) missing
            continue
    # Old import paths (minilm.train, ...) are aliases of the moved modules: each module once,
    # under its own name.
    return {name: module for name, module in sys.modules.items()
            if module is not None and (name in _PROTECTED or name.startswith("minilm."))
            and getattr(module, "__name__", name) == name}


def _function_state(fn):
    return (fn.__code__, fn.__defaults__, fn.__kwdefaults__)


def _take(modules):
    """{module name: (module, {attr: value}, {function: state}, {class: {attr: value}})}"""
    snap = {}
    for name, module in modules.items():
        attrs = dict(vars(module))
        functions = {v: _function_state(v) for v in attrs.values() if isinstance(v, types.FunctionType)}
        classes = {}
        for value in attrs.values():
            if isinstance(value, type) and getattr(value, "__module__", None) == name:
                cls_attrs = dict(vars(value))
                classes[value] = cls_attrs
                for v in cls_attrs.values():
                    v = getattr(v, "__func__", v)
                    if isinstance(v, types.FunctionType):
                        functions[v] = _function_state(v)
        snap[name] = (module, attrs, functions, classes)
    return snap


def _ipython_hooks(ip):
    if ip is None:
        return None
    return {"events": {k: list(v) for k, v in ip.events.callbacks.items()},
            "input_transformers_cleanup": list(ip.input_transformers_cleanup),
            "input_transformers_post": list(ip.input_transformers_post),
            "ast_transformers": list(ip.ast_transformers)}


def _get_ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def begin():
    """Snapshot what the checks rely on. The grader runs this before any submission code."""
    global _snapshot
    ip = _get_ipython()
    _snapshot = {"modules": _take(_protected_modules()), "stdout": sys.stdout, "stderr": sys.stderr,
                 "ipython": _ipython_hooks(ip), "check": _checks.check}


def _restore():
    """Put back everything the submission changed since begin(); returns what it changed."""
    changed = []
    sys.settrace(None)
    sys.setprofile(None)
    threading.settrace(None)
    threading.setprofile(None)
    for name, (module, attrs, functions, classes) in _snapshot["modules"].items():
        if sys.modules.get(name) is not module:
            changed.append(f"sys.modules[{name!r}] was replaced")
            sys.modules[name] = module
        current = vars(module)
        for attr, value in attrs.items():
            if not _is_code(value) or (name, attr) in _KERNEL_MANAGED:
                continue                                    # module state (a backend setting, a cache)
            if current.get(attr, _MISSING) is not value:
                changed.append(f"{name}.{attr} was {'deleted' if attr not in current else 'rebound'}")
                setattr(module, attr, value)
        for cls, cls_attrs in classes.items():
            now = dict(vars(cls))
            for attr, value in cls_attrs.items():
                if now.get(attr, _MISSING) is not value:
                    changed.append(f"{name}.{cls.__name__}.{attr} was patched")
                    setattr(cls, attr, value)
            for attr in set(now) - set(cls_attrs) - _PYTHON_CACHES:
                changed.append(f"{name}.{cls.__name__}.{attr} was added")
                delattr(cls, attr)
        for fn, state in functions.items():
            if _function_state(fn) != state:
                changed.append(f"the code of {fn.__module__}.{fn.__qualname__} was replaced")
                fn.__code__, fn.__defaults__, fn.__kwdefaults__ = state
    ip, hooks = _get_ipython(), _snapshot["ipython"]
    for stream in ("stdout", "stderr"):
        if getattr(sys, stream) is not _snapshot[stream]:
            changed.append(f"sys.{stream} was replaced")
            setattr(sys, stream, _snapshot[stream])
            _reparent(_snapshot[stream], ip)
    if ip is not None and hooks is not None:
        for event, callbacks in ip.events.callbacks.items():
            before = hooks["events"].get(event, [])
            added = [cb for cb in callbacks if cb not in before and _from_submission(cb)]
            if added:
                changed.append(f"an IPython '{event}' callback was registered by the submission")
                callbacks[:] = [cb for cb in callbacks if cb not in added]
        for attr in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
            current = getattr(ip, attr)
            added = [t for t in current if t not in hooks[attr] and _from_submission(t)]
            if added:
                changed.append(f"IPython's {attr} were changed by the submission")
                current[:] = [t for t in current if t not in added]
    return changed


_MISSING = object()
# What Python itself adds to classes as it goes (copy and pickle cache the slot names).
_PYTHON_CACHES = {"__slotnames__"}


def _from_submission(hook):
    """A hook whose code the submission wrote (a library's, such as matplotlib's inline
    figure flushing, is left alone)."""
    fn = getattr(hook, "__func__", hook)
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__call__", None), "__code__", None)
    if code is None:
        return False
    return not _checks._is_library_frame(code.co_filename)


def _reparent(stream, ip):
    """A restored kernel stream missed the kernel's per-cell update: point its output at the
    cell now running, or the grader would see it under an earlier cell."""
    kernel = getattr(ip, "kernel", None)
    if kernel is None or not hasattr(stream, "set_parent"):
        return
    try:
        stream.set_parent(kernel.get_parent("shell"))
    except Exception:
        pass


def _is_code(value):
    """Functions, classes and modules are restored; data (settings, caches) is left alone."""
    return callable(value) or isinstance(value, types.ModuleType)


class _Recorder:
    """Collects every `with check(...)` of the running check source: its line, the result,
    the message and what it printed."""

    def __init__(self, filename):
        self.filename = filename
        self.records = []
        self.text = []                                      # everything printed while running

    def write(self, s):
        self.text.append(s)

    def enter(self, c):
        c._grading_start = sum(len(t) for t in self.text)

    def exit(self, c):
        if c._site[0] != self.filename:                     # a check made by submission code
            return
        printed = "".join(self.text)[getattr(c, "_grading_start", 0):]
        self.records.append({"line": c._site[1], "exercise": c.exercise, "points": c.points,
                             "passed": bool(c.passed), "message": c.message,
                             "fail_line": c.fail_line, "output": printed[-4000:]})


class _Tee:
    """sys.stdout while a check runs: writes through to the notebook and keeps a copy."""

    def __init__(self, stream, recorder):
        self.stream, self.recorder = stream, recorder

    def write(self, s):
        self.recorder.write(s)
        return self.stream.write(s)

    def flush(self):
        return self.stream.flush()

    def __getattr__(self, name):                            # isatty, encoding, ...
        return getattr(self.stream, name)


def run(key, label, source, namespace):
    """Run one reference check cell (see the module docstring) and print its signed result."""
    if _snapshot is None:
        raise RuntimeError("minilm.course.harness.begin() was not run first")
    tampering = _restore()
    filename = f"<minilm check {label}>"
    recorder = _Recorder(filename)
    stdout = _snapshot["stdout"]
    sys.stdout = _Tee(stdout, recorder)
    previous = namespace.get("check", _MISSING)
    namespace["check"] = _snapshot["check"]
    _checks._recorder = recorder
    error = None
    try:
        exec(compile(source, filename, "exec"), namespace)
    except BaseException as exc:                           # outside any check: costs the cell's checks
        error = _checks.describe_failure(type(exc), exc, exc.__traceback__, filename)
    finally:
        _checks._recorder = None
        sys.stdout = stdout
        if previous is _MISSING:
            namespace.pop("check", None)
        else:
            namespace["check"] = previous
    body = json.dumps({"label": label, "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
                       "records": recorder.records, "error": error, "tampering": tampering})
    signature = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    stdout.write(f"\n{RESULT_PREFIX}{signature} {body}\n")
    stdout.flush()
    if error is not None:
        print(f"[grading] the check cell itself failed: {error}")


def verify(line, key):
    """The result dict of one `MINILM-RESULT` line if its signature matches `key`, else None."""
    if not line.startswith(RESULT_PREFIX):
        return None
    try:
        signature, body = line[len(RESULT_PREFIX):].split(" ", 1)
    except ValueError:
        return None
    expected = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None

