# replay_pickle.pxi -- compiled programs as bytes: pickling a _Program (issue 12).
#
# Holds: the envelope of a serialised program (magic, format version,
# CRC-32, length), its metadata section (the Python layer's description of
# the arguments and outputs, the guard records, the compile statistics),
# and _program_load, which checks every byte before a program can run.  The
# program's arrays are src/replay_format.c's (opcodes by name); the custom
# Functions are not in the bytes: pickle carries them beside the bytes, by
# reference to their class (as it pickles any instance).  docs/replay.md,
# "The serialised format", is the specification and its compatibility
# promise.  May touch: nothing but the new _Program.

import struct as _struct
import zlib as _zlib

cdef extern from "replay.h" nogil:
    int64_t ac_program_write(const ac_program *p, uint8_t *buf)
    int ac_program_read(ac_program *p, const uint8_t *buf, int64_t len, int64_t *used, ac_status *st)

_FORMAT_MAGIC = b"\x89AGCPRG\n"       # 8 bytes: a non-ASCII byte first, a newline last (as PNG)
_FORMAT_VERSION = 1                   # the newest version this build writes and reads
_HEADER = _struct.Struct("<8sHHIQ")   # magic, version, flags (0), CRC-32 of the body, body length
_STRUCTURES = ("scalar", "vector", "aux")
_STATS = _struct.Struct("<7qd")
_GUARD_RECORD = _struct.Struct("<BBddq")
_program_loads = [0]                  # programs loaded in this process (tests, benchmarks)


def _programs_loaded():
    """How many compiled programs this process has loaded from bytes."""
    return _program_loads[0]


def _program_dump(_Program prog):
    """The bytes of prog, without its Functions (see the file's head)."""
    cdef int64_t size = ac_program_write(&prog.p, NULL)
    cdef bytearray section = bytearray(size)
    if size:
        ac_program_write(&prog.p, <uint8_t *><char *>section)
    shapes, structure = prog.meta
    meta = [_struct.pack("<II", prog.n_grad, len(shapes)), _struct.pack(f"<{len(shapes)}q", *shapes),
            _struct.pack("<Bq", _STRUCTURES.index(structure[0]), structure[1] if len(structure) > 1 else 0),
            _struct.pack("<I", len(prog.guards))]
    for symbol, outcome, a, b, filename, line in prog.guards:
        name = str(filename).encode("utf-8", "surrogatepass")
        meta.append(_GUARD_RECORD.pack(_GUARD_SYMBOLS.index(symbol), bool(outcome), a, b, int(line or 0)))
        meta.append(_struct.pack("<I", len(name)) + name)
    s = prog.cstats
    meta.append(_STATS.pack(s.tape_nodes, s.extracted, s.after_fold, s.after_cse, s.after_dce,
                            s.guards_folded, s.scalar_nodes, prog.compile_seconds))
    body = bytes(section) + b"".join(meta)
    return _HEADER.pack(_FORMAT_MAGIC, _FORMAT_VERSION, 0, _zlib.crc32(body), len(body)) + body


class _Reader:
    """A cursor over the metadata section: every read checks the bytes left."""

    def __init__(self, data, at):
        self.data, self.at = data, at

    def take(self, fmt):
        st = _struct.Struct(fmt)
        if self.at + st.size > len(self.data):
            raise ValueError("the metadata section is truncated")
        values = st.unpack_from(self.data, self.at)
        self.at += st.size
        return values

    def take_bytes(self, n):
        if n > len(self.data) - self.at:
            raise ValueError("the metadata section is truncated")
        self.at += n
        return self.data[self.at - n:self.at]


def _program_load(data, functions=()):
    """A _Program from _program_dump's bytes and the Functions of its custom
    nodes; ValueError (naming what is wrong) for anything else.  Nothing of
    a payload that fails a check is ever evaluated."""
    try:
        return _program_from(data, functions)
    except ValueError as e:
        raise ValueError(f"cannot load a compiled function: {e}") from None


cdef _Program _program_from(object data, object functions):
    cdef const uint8_t[::1] view
    cdef ac_status st
    cdef int64_t used = 0
    cdef int rc
    cdef _Program prog
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise ValueError(f"{len(data)} bytes are too short for the header (the payload is truncated)")
    magic, version, flags, crc, length = _HEADER.unpack_from(data, 0)
    if magic != _FORMAT_MAGIC:
        raise ValueError("not a compiled autograd_c function (the magic bytes differ)")
    if version > _FORMAT_VERSION:
        raise ValueError(f"the payload has format version {version}, written by a newer autograd_c; "
                         f"this version reads formats up to {_FORMAT_VERSION}: upgrade autograd_c")
    if version < 1 or flags != 0:
        raise ValueError(f"unknown format version {version} / flags {flags}")
    if length != len(data) - _HEADER.size:
        raise ValueError(f"the header announces {length} bytes after it, the payload has "
                         f"{len(data) - _HEADER.size} (truncated or extended)")
    body = data[_HEADER.size:]
    if _zlib.crc32(body) != crc:
        raise ValueError("the checksum does not match: the payload is corrupted")
    if not isinstance(functions, (tuple, list)):
        raise ValueError("the Function table must be a tuple")
    for fn in functions:
        if not isinstance(fn, _function_class()):
            raise ValueError(f"the Function table holds a {type(fn).__name__}, not an ag.Function")
    prog = _Program.__new__(_Program)
    view = body if len(body) else b"\0"
    rc = ac_program_read(&prog.p, &view[0], len(body), &used, &st)
    if rc == AC_RP_NOMEM:
        raise MemoryError(f"loading a compiled function: {st.what.decode()}")
    if rc != AC_RP_OK:
        raise ValueError(f"the program is malformed: {st.what.decode()} (at {st.index})")
    _read_meta(prog, _Reader(body, used), list(functions))
    _program_loads[0] += 1
    return prog


cdef int _read_meta(_Program prog, object r, list functions) except -1:
    """The metadata section into prog, checked against its program."""
    cdef int32_t g
    n_grad, n_shapes = r.take("<II")
    if n_shapes > (len(r.data) - r.at) // 8:
        raise ValueError("the metadata section is truncated")
    shapes = r.take(f"<{n_shapes}q")
    kind, count = r.take("<Bq")
    if kind >= len(_STRUCTURES):
        raise ValueError(f"unknown output structure {kind}")
    m = prog.p.n_outputs
    structure = (_STRUCTURES[kind],) if kind == 0 else (_STRUCTURES[kind], count)
    if m < 1 or (kind == 0 and (m != 1 or count != 0)) or (kind == 1 and count != m) or (
            kind == 2 and (count < -1 or m != (2 if count == -1 else 1 + count))):
        raise ValueError(f"the output structure {structure} does not match the program's {m} outputs")
    total = 0
    for s in shapes:
        if s < -1 or s > prog.p.n_inputs:
            total = -1
            break
        total += 1 if s == -1 else s
    if total != prog.p.n_inputs:
        raise ValueError(f"the argument shapes {shapes} do not match the program's {prog.p.n_inputs} inputs")
    if n_grad != (m if kind == 1 else 1):
        raise ValueError(f"{n_grad} differentiated outputs do not match the output structure")
    (n_records,) = r.take("<I")
    if n_records > (len(r.data) - r.at) // (_GUARD_RECORD.size + 4):
        raise ValueError("the metadata section is truncated")
    records = []
    for _ in range(n_records):
        code, outcome, a, b, line = r.take(_GUARD_RECORD.format)
        (n_name,) = r.take("<I")
        name = r.take_bytes(n_name)
        if code >= len(_GUARD_SYMBOLS) or outcome > 1:
            raise ValueError("a guard record is malformed")
        try:
            filename = name.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise ValueError("a guard record's file name is not UTF-8") from None
        records.append((_GUARD_SYMBOLS[code], bool(outcome), a, b, filename, line))
    for g in range(prog.p.n_guards):
        if prog.p.guard_index[g] >= n_records:
            raise ValueError(f"guard {g} refers to record {prog.p.guard_index[g]} of {n_records}")
    stats = r.take(_STATS.format)
    if r.at != len(r.data):
        raise ValueError(f"{len(r.data) - r.at} bytes follow the metadata section")
    if len(functions) != prog.p.n_custom:
        raise ValueError(f"the program calls {prog.p.n_custom} Functions, the table has {len(functions)}")
    prog.functions = functions
    prog.guards = records
    prog.n_grad = n_grad
    prog.meta = (tuple(shapes), structure)
    (prog.cstats.tape_nodes, prog.cstats.extracted, prog.cstats.after_fold, prog.cstats.after_cse,
     prog.cstats.after_dce, prog.cstats.guards_folded, prog.cstats.scalar_nodes, prog.compile_seconds) = stats
    return 0


cdef object _function_class():
    from .function import Function
    return Function
