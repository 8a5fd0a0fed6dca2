"""What a check cell uses: `check` (with `forbid`) and `substitute`.

    with check("ex1", points=2, forbid=[minilm.ops.attention_forward, minilm.numerical_grad]):
        assert np.allclose(student_attention(q, k, v), expected)

`check` passes when its block raises nothing. On exit it prints one line for people (passed,
or why not); the exception is swallowed, so one failed exercise never stops the notebook.
Printed lines are feedback only: `python -m minilm.course grade` never reads them (it runs
the instructor's check cells itself, see minilm/course/harness.py).

`forbid`: while the block runs, the submission's code may not call any of these functions,
however it imported them (`from minilm.ops import attention_forward as af` is the same
function object). A call counts when, walking up the call stack from the forbidden
function, a frame of the submission comes before a frame of the check cell itself. So
minilm's internals called by the check (gradcheck calls numerical_grad) are fine, while a
submission calling them directly, or through another minilm function, or through a helper
of its own, fails the check. A pasted copy of a forbidden function's code counts too.
Python functions, methods and builtins can be forbidden; compute expected values *before*
the `with` block.

`substitute(namespace, **names)` rebinds names of the notebook while a check runs, so an
exercise's check does not depend on the student's earlier answers:

    with check("ex3", points=3), substitute(globals(), attention=reference_attention):
        ...                      # the student's ex3 code now calls the reference for ex1
"""
import contextlib
import os
import sys
import threading
import traceback
import types

_recorder = None            # set by the grading harness while it runs a reference check cell
_MINILM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY_DIRS = tuple(sorted({os.path.dirname(os.__file__), sys.prefix, sys.base_prefix, sys.exec_prefix}))


class ForbiddenCall(Exception):
    """Raised inside a check when the submission calls a function the check forbids."""


def _code_of(fn):
    """The code object behind a Python function or method, else None (a builtin)."""
    fn = getattr(fn, "__func__", fn)                       # bound and class methods
    fn = getattr(fn, "fget", fn)                           # properties: their getter
    return getattr(fn, "__code__", None)


def _fingerprint(code):
    """What survives pasting a function's source into a notebook: bytecode, names, constants."""
    consts = tuple(_fingerprint(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts)
    return (code.co_code, code.co_names, code.co_varnames, consts)


def _name_of(fn):
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}" if module else name


def _is_library_frame(filename):
    """minilm itself, the standard library and installed packages: not the submission."""
    if filename.startswith("<frozen") or filename.startswith("<__array_function__"):
        return True
    return filename.startswith(_MINILM_DIR) or filename.startswith(_LIBRARY_DIRS)


class _ForbidWatch:
    """A profiler hook that records calls of forbidden functions made by the submission."""

    def __init__(self, forbid, check_files):
        self.codes, self.builtins, self.fingerprints = {}, {}, {}
        for fn in forbid:
            if isinstance(fn, type):
                raise TypeError(f"forbid takes functions, not the class {fn.__name__}: "
                                f"list its methods (e.g. {fn.__name__}.forward)")
            if not callable(fn) and _code_of(fn) is None:
                raise TypeError(f"forbid takes functions, got {fn!r}")
            code = _code_of(fn)
            if code is not None:
                self.codes[code] = _name_of(fn)
                self.fingerprints[_fingerprint(code)] = _name_of(fn)
            else:
                self.builtins[id(fn)] = (fn, _name_of(fn))
        self.check_files = set(check_files)
        self.violations = []
        self._copies = {}                                  # code -> name of the original, or None

    def _submission_calls(self, frame):
        """Walk up from `frame` (the caller): True when the submission is reached before the
        check cell's own code."""
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename in self.check_files:
                return False
            if not _is_library_frame(filename):
                return True
            frame = frame.f_back
        return False

    def _copy_of(self, code):
        if code not in self._copies:
            self._copies[code] = (None if _is_library_frame(code.co_filename)
                                  else self.fingerprints.get(_fingerprint(code)))
        return self._copies[code]

    def __call__(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            name = self.codes.get(code) or (self._copy_of(code) if self.fingerprints else None)
            if name is not None and self._submission_calls(frame.f_back):
                copy = "" if code in self.codes else " (a copy of its code)"
                self._record(f"the submission called {name}{copy}, which this exercise forbids")
        elif event == "c_call":
            if self.builtins and id(arg) in self.builtins and self._submission_calls(frame):
                self._record(f"the submission called {self.builtins[id(arg)][1]}, which this exercise forbids")
            elif arg in (sys.setprofile, threading.setprofile, sys.settrace) and self._submission_calls(frame):
                self._record("the submission changed the profiler while a check with `forbid` ran")

    def _record(self, message):
        self.violations.append(message)
        raise ForbiddenCall(message)


class check:
    """Grade the code in a `with` block: it passes if it raises nothing and calls nothing
    that `forbid` lists.

        with check("ex1", points=2):
            assert out.shape == (2, 5), f"expected (2, 5), got {out.shape}"

    Several checks may share an exercise id: their points add up, which is how an exercise
    gives partial credit. `passed`, `earned` and `message` are set on exit
    (`with check(...) as c: ...; c.passed`).
    """

    def __init__(self, exercise, points=1, forbid=()):
        if not isinstance(exercise, str) or not exercise:
            raise ValueError(f"the exercise id must be a non-empty string, got {exercise!r}")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not points > 0:
            raise ValueError(f"points must be a number > 0, got {points!r}")
        self.exercise = exercise
        self.points = points
        self.forbid = tuple(forbid)
        self.passed = None
        self.earned = 0
        self.message = ""
        self.fail_line = None
        self._previous = None
        self._watch = _ForbidWatch(self.forbid, ()) if self.forbid else None   # validates forbid now
        caller = sys._getframe(1)
        self._site = (caller.f_code.co_filename, caller.f_lineno)               # where the check is written

    def __enter__(self):
        if _recorder is not None:
            _recorder.enter(self)
        if self._watch is not None:
            self._watch.check_files = {self._site[0]}            # the check cell's own code
            self._previous = (sys.getprofile(), threading.getprofile() if hasattr(threading, "getprofile") else None)
            threading.setprofile(self._watch)
            sys.setprofile(self._watch)
        return self

    def _stop_watching(self):
        if self._watch is not None:
            sys.setprofile(self._previous[0])
            threading.setprofile(self._previous[1])

    def __exit__(self, exc_type, exc, tb):
        self._stop_watching()
        if exc_type is not None and not issubclass(exc_type, Exception):
            return False                    # KeyboardInterrupt, SystemExit: let them through
        violations = self._watch.violations if self._watch is not None else []
        self.passed = exc_type is None and not violations
        self.earned = self.points if self.passed else 0
        if violations:
            self.message = f"ForbiddenCall: {violations[0]}"
        elif exc_type is not None:
            self.message = describe_failure(exc_type, exc, tb, self._site[0])
            frames = [f for f in traceback.extract_tb(tb) if f.filename == self._site[0]]
            self.fail_line = frames[-1].lineno if frames else None
        if _recorder is not None:
            _recorder.exit(self)
        self.report()
        return True                         # swallow the exception: the notebook goes on

    def report(self):
        if self.passed:
            print(f"[{self.exercise}] passed: {_fmt(self.earned)}/{_fmt(self.points)} points")
        else:
            print(f"[{self.exercise}] FAILED: {self.message}\n[{self.exercise}] 0/{_fmt(self.points)} points")


def describe_failure(exc_type, exc, tb, filename=None):
    """'AssertionError: message (line 3: assert ...)': the exception and the check's own line
    that raised it (the outermost frame of the traceback, or the last one in `filename`)."""
    frames = traceback.extract_tb(tb) if tb is not None else []
    if filename is not None:
        frames = [f for f in frames if f.filename == filename] or frames
        where = frames[-1] if frames else None
    else:
        where = frames[0] if frames else None
    line = f" (line {where.lineno}: {where.line})" if where is not None and where.line else ""
    message = str(exc) or exc_type.__name__
    return f"{exc_type.__name__}: {message}{line}"


def _fmt(x):
    return f"{x:g}" if isinstance(x, float) else str(x)


_MISSING = object()


@contextlib.contextmanager
def substitute(namespace, **names):
    """Bind `names` in `namespace` (a notebook's `globals()`) while the block runs, then put
    back what was there. A check uses it to give the student's code the reference solution
    of an earlier exercise, so one mistake costs one exercise."""
    if not isinstance(namespace, dict):
        raise TypeError("substitute's first argument is the namespace to change: pass globals()")
    old = {name: namespace.get(name, _MISSING) for name in names}
    namespace.update(names)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is _MISSING:
                namespace.pop(name, None)
            else:
                namespace[name] = value
